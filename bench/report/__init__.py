"""From results JSON to Markdown and plots: RESULTS.md, SCALE.md, the README."""
