"""Shared core: settings, topics, the event model, serde, redaction, metrics and the CLI."""
