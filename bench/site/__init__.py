"""The Django site every server and helper process loads: settings, the item model,
its views (what pushy's authorization runs) and the database set-up."""
