"""The revisions, oldest first: r0001 the baseline (the legacy SQLite schema's last version), then each change."""
