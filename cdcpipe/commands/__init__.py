"""CLI command groups beyond the runtime's own (up/down/status/logs/jars)."""
