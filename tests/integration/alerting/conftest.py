"""Local receivers for the alerting integration test (defined once in tests/alerting_peers.py)."""

from alerting_peers import smtp_server, webhook

__all__ = ["smtp_server", "webhook"]
