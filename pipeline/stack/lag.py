"""Consumer lag of the pipeline's consumer groups, read from the Kafka admin API (`agentwatch status`).

Lag is what a group has yet to read: per partition, the topic's last stable offset (the end a
read_committed consumer can reach) minus the group's committed offset, summed over the topic's
partitions; a partition the group never committed counts from the log start. On a topic written
in transactions (events, patterns and dead letters come from the exactly-once worker) each commit
marker takes an offset after the last record, so a caught-up group may show up to one per
partition there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.settings import KafkaSettings, Settings

QUIET = logging.getLogger("agentwatch.kafka.quiet")
"""librdkafka logs go here instead of stderr: a stopped broker is reported by status, not by a
stream of `%3|...|FAIL|` connection lines."""
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def quiet_admin_config(kafka: KafkaSettings) -> dict[str, Any]:
    return {**kafka.client_config(), "logger": QUIET}


@dataclass(frozen=True)
class GroupSpec:
    component: str
    group: str
    topic: str


@dataclass(frozen=True)
class GroupLag:
    component: str
    group: str
    topic: str
    lag: int | None
    """None when it could not be read (see ``error``)."""
    partitions: int = 0
    committed_partitions: int = 0
    """Partitions the group has committed an offset on (0: the group has not consumed yet)."""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def consumer_groups(settings: Settings) -> list[GroupSpec]:
    """The groups of the worker, the sinks and the alerting consumer, as their settings name them."""
    sink = settings.clickhouse_sink
    groups = [GroupSpec("worker", settings.worker.ingest_group, settings.topics.ingest),
              GroupSpec("worker", settings.worker.app_id, settings.topics.events),
              GroupSpec("clickhouse-sink", sink.group_id, settings.topics.events)]
    if sink.load_patterns:
        groups.append(GroupSpec("clickhouse-sink", f"{sink.group_id}-patterns",
                                settings.topics.patterns))
    if sink.load_dead_letters:
        groups.append(GroupSpec("clickhouse-sink", f"{sink.group_id}-dlq", settings.topics.dlq))
    groups.append(GroupSpec("archive-sink", settings.archive.consumer_group, settings.topics.events))
    groups.append(GroupSpec("alerts", settings.alerts.consumer_group, settings.topics.patterns))
    return groups


def partition_lag(committed: Mapping[int, int], start: Mapping[int, int],
                  end: Mapping[int, int]) -> tuple[int, int]:
    """(lag, partitions committed) over the partitions of ``end``. ``committed`` holds only
    partitions with a commit (a negative offset means none)."""
    lag = 0
    seen = 0
    for partition, last in end.items():
        offset = committed.get(partition, -1)
        if offset >= 0:
            seen += 1
        else:
            offset = start.get(partition, 0)
        lag += max(0, last - offset)
    return lag, seen


def measure_lag(kafka: KafkaSettings, specs: list[GroupSpec], timeout_s: float = 5.0) -> list[GroupLag]:
    """Lag of every group in ``specs``; a group or topic that cannot be read gets an error."""
    from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

    admin = AdminClient(quiet_admin_config(kafka))
    meta = admin.list_topics(timeout=timeout_s)
    out: list[GroupLag] = []
    bounds: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
    for spec in specs:
        topic = meta.topics.get(spec.topic)
        if topic is None or topic.error is not None:
            out.append(GroupLag(spec.component, spec.group, spec.topic, None,
                                error="topic does not exist"))
            continue
        parts = sorted(topic.partitions)
        try:
            if spec.topic not in bounds:
                bounds[spec.topic] = (
                    _offsets(admin, spec.topic, parts, OffsetSpec.earliest(), timeout_s),  # type: ignore[no-untyped-call]
                    _offsets(admin, spec.topic, parts, OffsetSpec.latest(), timeout_s,  # type: ignore[no-untyped-call]
                             isolation_level=IsolationLevel.READ_COMMITTED))
            start, end = bounds[spec.topic]
            request = ConsumerGroupTopicPartitions(
                spec.group, [TopicPartition(spec.topic, p) for p in parts])
            result = admin.list_consumer_group_offsets(
                [request], request_timeout=timeout_s)[spec.group].result(timeout=timeout_s)
            committed = {tp.partition: tp.offset for tp in result.topic_partitions
                         if tp.topic == spec.topic}
        except Exception as exc:  # any admin failure is shown, never raised, by status
            out.append(GroupLag(spec.component, spec.group, spec.topic, None, len(parts),
                                error=str(exc)[:200]))
            continue
        lag, seen = partition_lag(committed, start, end)
        out.append(GroupLag(spec.component, spec.group, spec.topic, lag, len(parts), seen))
    return out


def _offsets(admin: Any, topic: str, parts: list[int], which: Any, timeout_s: float,
             **kwargs: Any) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    futures = admin.list_offsets({TopicPartition(topic, p): which for p in parts},
                                 request_timeout=timeout_s, **kwargs)
    return {tp.partition: int(fut.result(timeout=timeout_s).offset) for tp, fut in futures.items()}
