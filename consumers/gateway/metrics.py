"""The gateway's Prometheus metrics, on its own registry (several gateways can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.clients = Gauge("agentwatch_gateway_clients", "Open WebSocket clients.", ["kind"],
                             registry=registry)
        self.updates = Counter("agentwatch_gateway_updates",
                               "Widget updates and pattern alerts read from Kafka.", ["kind"],
                               registry=registry)
        self.duplicates = Counter("agentwatch_gateway_stale_updates",
                                  "Updates not newer than the widget state held (ignored).",
                                  registry=registry)
        self.gaps = Counter("agentwatch_gateway_sequence_gaps",
                            "Per-session sequence jumps seen live (subscribers re-synced).",
                            registry=registry)
        self.sent = Counter("agentwatch_gateway_messages_sent", "Messages sent to WebSocket clients.",
                            registry=registry)
        self.coalesced = Counter("agentwatch_gateway_messages_coalesced",
                                 "Queued messages replaced by a newer one for the same widget.",
                                 registry=registry)
        self.dropped_clients = Counter("agentwatch_gateway_clients_dropped",
                                       "Clients closed because their queue passed its bound.",
                                       registry=registry)
        self.protocol_errors = Counter("agentwatch_gateway_protocol_errors",
                                       "Bad client messages answered with an error.", ["code"],
                                       registry=registry)
        self.auth_failures = Counter("agentwatch_gateway_auth_failures", "Refused requests.",
                                     ["reason"], registry=registry)
        self.rate_limited = Counter("agentwatch_gateway_rate_limited",
                                    "Requests refused with 429.", registry=registry)
        self.requests = Counter("agentwatch_gateway_requests", "REST requests.",
                                ["route", "status"], registry=registry)
        self.kafka_to_gateway = Histogram(
            "agentwatch_gateway_update_delay_seconds",
            "From a widget update's Kafka timestamp to the gateway reading it.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=registry)
        self.fanout = Histogram(
            "agentwatch_gateway_fanout_seconds",
            "Time to hand one widget update to every client of its session (written or queued).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25), registry=registry)
        self.sessions = Gauge("agentwatch_gateway_sessions", "Sessions held in memory.",
                              registry=registry)
        self.caught_up = Gauge("agentwatch_gateway_caught_up",
                               "1 once the widgets topic was read to its end offset at start.",
                               registry=registry)
        self.audit_written = Counter("agentwatch_gateway_audit_rows", "Audit rows inserted.",
                                     registry=registry)
        self.audit_dropped = Counter("agentwatch_gateway_audit_rows_dropped",
                                     "Audit rows dropped because the buffer was full.",
                                     registry=registry)
        self.replays = Gauge("agentwatch_gateway_replays", "Replays running.", registry=registry)
