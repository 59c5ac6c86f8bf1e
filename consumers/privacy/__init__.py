"""Privacy controls: per-user export and erasure across ClickHouse, the archive and Kafka state."""
