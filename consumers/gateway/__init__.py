"""The dashboard gateway: widget updates from Kafka fanned out over WebSockets, REST, the web UI."""
