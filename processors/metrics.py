"""Prometheus metrics of the worker, on a registry of its own (no process-global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter(
            "agentwatch_worker_messages", "Ingest messages processed, by outcome.",
            ["outcome"], registry=r,
        )
        self.dead_letters = Counter(
            "agentwatch_worker_dead_letters", "Messages dead-lettered, by error kind.",
            ["kind"], registry=r,
        )
        self.truncated_fields = Counter(
            "agentwatch_worker_truncated_fields", "Fields cut to max_field_bytes.", registry=r,
        )
        self.redacted_fields = Counter(
            "agentwatch_worker_redacted_fields", "Fields the redactor rewrote.", registry=r,
        )
        self.transactions = Counter(
            "agentwatch_worker_transactions",
            "exactly_once: transactions of the first stage (one per batch), by outcome.",
            ["outcome"], registry=r,
        )
        self.rewinds = Counter(
            "agentwatch_worker_rewinds",
            "Batches given up (transaction aborted, delivery failed): partitions sought back to "
            "their committed offsets and the messages processed again.",
            registry=r,
        )
        self.batches_held = Counter(
            "agentwatch_worker_batches_held",
            "Full batches whose transaction waited until the next batch was in the processing "
            "pool (a backlog being worked off with worker.processes > 1).", registry=r,
        )
        self.batch_seconds = Histogram(
            "agentwatch_worker_batch_seconds",
            "Wall time of one batch: process, produce and commit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=r,
        )
        self.batch_size = Histogram(
            "agentwatch_worker_batch_size", "Messages per batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r,
        )
        self.assigned_partitions = Gauge(
            "agentwatch_worker_assigned_partitions", "Input partitions assigned to this worker.",
            registry=r,
        )
