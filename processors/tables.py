"""The worker's state tables (changelog-backed) and the topics they and the aggregates need.

Faust's ``table[key] = value`` finds the changelog partition through the *current* stream event,
which a batching agent or a timer does not have; ``ChangelogStore`` writes the local copy and sends
the changelog record to the partition it is told (the session's events partition, so a worker
that takes the partition over recovers the session from the same changelog partition).
Changelog topics are created up front (compacted, as many partitions as the events topic):
Faust's own creation through aiokafka is unreliable against Kafka 4.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from pipeline.settings import Settings
from pipeline.topics import TopicSpec, ensure_topics, topic_specs
from processors.batch_send import send_records

WIDGET_TABLE = "widget-state"
PATTERN_TABLE = "pattern-state"


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


def state_table(app: Any, name: str, partitions: int, help_: str) -> Any:
    return app.Table(
        # str keys and dict values: both travel as JSON (Faust's default for non-bytes types).
        name, default=None, partitions=partitions, key_type=str, value_type=None, help=help_,
    )


class ChangelogStore:
    """``processors.widgets.processor.StateStore`` over a Faust table.

    Changelog records go straight to the plain producer (as Faust's own would, JSON key and
    value) rather than through ``table.send_changelog``: its send-soon buffer publishes one record
    at a time and, under exactly_once, through a transactional producer per record, which is
    far slower than the state changes it has to carry. A checkpoint awaits these writes before
    acking, so the changelog is never behind the committed offsets (ahead is what the replay
    guard is for).
    """

    def __init__(self, table: Any, app: Any) -> None:
        self._table = table
        self._app = app
        self._pending: list[tuple[str, int, bytes]] = []

    def get(self, key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._table.data.get(key)
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._table.data[key] = value

    def persist(self, key: str, partition: int) -> None:
        # Serialised now: the checkpoint acks exactly the events folded into this snapshot.
        self._pending.append((key, partition, orjson.dumps(self._table.data[key])))

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        return list(self._table.data.items())

    async def write(self) -> list[Any]:
        """Send the snapshots taken since the last call; returns their delivery futures."""
        pending, self._pending = self._pending, []
        return await send_records(
            self._app, self._table.changelog_topic.get_topic_name(),
            [(partition, json.dumps(key).encode(), value) for key, partition, value in pending])


def owned_partitions(app: Any, topic: str) -> set[int] | None:
    """Partitions of ``topic`` assigned to this worker now; None while that is unknown."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return None
    try:
        return {tp.partition for tp in consumer.assignment() if tp.topic == topic}
    except Exception:  # not started yet or stopping: judge nothing
        return None


def aggregate_topic_specs(settings: Settings) -> list[TopicSpec]:
    """widgets, patterns and the two changelogs, partitioned like the events topic."""
    topics = settings.topics
    specs = [s for s in topic_specs(topics) if s.name in (topics.widgets, topics.patterns)]
    for table in (WIDGET_TABLE, PATTERN_TABLE):
        specs.append(TopicSpec(
            name=changelog_topic(settings.worker.app_id, table), partitions=topics.partitions,
            replication_factor=topics.replication_factor,
            config={"cleanup.policy": "compact",
                    "min.insync.replicas": str(topics.min_insync_replicas)}))
    return specs


def ensure_aggregate_topics(settings: Settings) -> list[str]:
    return ensure_topics(settings.kafka, aggregate_topic_specs(settings))
