"""The local single-machine stack: Kafka, ClickHouse, S3 endpoint and pipeline components."""
