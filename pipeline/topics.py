"""Kafka topic names, partition counts and configs: the one place they are decided."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.errors import TransientError
from pipeline.settings import KafkaSettings, TopicSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(topics: TopicSettings) -> list[TopicSpec]:
    """Every topic the pipeline reads or writes; all keyed by session_id."""
    common = {"min.insync.replicas": str(topics.min_insync_replicas)}

    def spec(name: str, **config: str) -> TopicSpec:
        return TopicSpec(
            name=name,
            partitions=topics.partitions,
            replication_factor=topics.replication_factor,
            config={**common, **config},
        )

    return [
        spec(topics.ingest, **{"retention.ms": str(topics.ingest_retention_ms)}),
        spec(topics.events, **{"retention.ms": str(topics.events_retention_ms)}),
        # Latest widget state per (session, widget) is what a new dashboard needs: compact.
        spec(topics.widgets, **{"cleanup.policy": "compact,delete"}),
        spec(topics.patterns),
        spec(topics.dlq, **{"retention.ms": str(topics.dlq_retention_ms)}),
        # Replays are re-read from the archive whenever wanted: a day of retention is plenty.
        spec(topics.replay, **{"retention.ms": str(24 * 3600 * 1000)}),
    ]


def ensure_topics(
    kafka: KafkaSettings, specs: Iterable[TopicSpec], timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient(kafka.client_config())
    wanted = list(specs)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise TransientError(f"cannot list Kafka topics: {exc}") from exc
    missing = [s for s in wanted if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(s.name, num_partitions=s.partitions,
                     replication_factor=s.replication_factor, config=s.config)
            for s in missing
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created: list[str] = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TransientError(f"cannot create topic {name}: {err}") from exc
    return created
