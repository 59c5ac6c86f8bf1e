"""Alerting consumer: pattern alerts from Kafka to terminal, webhook and email digests."""
