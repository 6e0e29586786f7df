"""The machinery every scenario shares: processes, load client, saves, figures."""
