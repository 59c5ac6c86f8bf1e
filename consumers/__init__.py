"""Consumers: ClickHouse and archive sinks, the dashboard gateway, alerting."""
