"""Per-kind algorithms (text, table): pure functions on one kind of content, no Dagster."""
