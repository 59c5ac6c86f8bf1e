"""The worker's state tables (changelog-backed) and the topics they and the aggregates need.

Faust's ``table[key] = value`` finds the changelog partition through the *current* stream event,
which a batching agent or a timer does not have; ``ChangelogStore`` writes the local copy and sends
the changelog record to the partition it is told (the session's events partition, so a worker
that takes the partition over recovers the session from the same changelog partition).
Changelog topics are created up front (compacted, as many partitions as the events topic):
Faust's own creation through aiokafka is unreliable against Kafka 4.
"""

from __future__ import annotations

from typing import Any

from pipeline.settings import Settings
from pipeline.topics import TopicSpec, ensure_topics, topic_specs

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
    """``processors.widgets.processor.StateStore`` over a Faust table."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._futures: list[Any] = []

    def get(self, key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._table.data.get(key)
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._table.data[key] = value

    def persist(self, key: str, partition: int) -> None:
        self._futures.append(self._table.send_changelog(partition, key, self._table.data[key]))

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        return list(self._table.data.items())

    def take_futures(self) -> list[Any]:
        """Changelog writes sent since the last call; await them before acking the inputs."""
        futures, self._futures = self._futures, []
        return futures


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
