"""Producers: everything that publishes TelemetryEvents to the ingest topic."""
