"""Where the end-to-end delay of bench/e2e_latency.py goes: each probe's records on the private
ingest, events and widgets topics, read back after the run, split its delay at their Kafka
timestamps (CreateTime, set by each producer when it sends; millisecond resolution).

Not a benchmark of its own (bench_cmd skips names starting with ``_``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.serde import AvroSerde

STAGES = (
    ("POST -> ingest record (collector: HTTP, map, spool, forwarder to Kafka)", 0, 1),
    ("ingest -> events record (worker: fetch, validate/redact batch, transactional send)", 1, 2),
    ("events -> widgets record (transaction commit, aggregates fetch + fold, coalescing)", 2, 3),
    ("widgets record -> client (gateway read, fan-out, WebSocket, client parse)", 3, 4),
)


@dataclass
class ProbeTimes:
    """Wall-clock microseconds of one probe: posted and arrived, as the bench measured them."""

    number: int
    """The probe's event number in its session (1-based)."""
    posted_us: int
    arrived_us: int


def keyed_records(bootstrap: str, topic: str, key: bytes) -> list[tuple[int, bytes]]:
    """(CreateTime ms, value) of every committed record with ``key``, in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out: list[tuple[int, int, bytes]] = []
        idle = 0
        while ends and idle < 20:
            msgs = consumer.consume(5000, 0.5)
            idle = 0 if msgs else idle + 1
            for msg in msgs:
                value, offset = msg.value(), msg.offset()
                if msg.error() is None and msg.key() == key and value is not None \
                        and offset is not None:
                    out.append((offset, msg.timestamp()[1], value))
            # Positions, not the last message's offset: a transaction marker ends the partition.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition)
        return [(ts, value) for _, ts, value in sorted(out)]
    finally:
        consumer.close()


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def breakdown(bootstrap: str, prefix: str, session_id: str, probes: Sequence[ProbeTimes]
              ) -> list[str]:
    """One line per stage: p50 / p99 over the probes found on every topic."""
    serde = AvroSerde()
    sid = session_id.encode()
    ingest = [ts for ts, _ in keyed_records(bootstrap, f"{prefix}.ingest", sid)]
    events = [ts for ts, _ in keyed_records(bootstrap, f"{prefix}.events", sid)]
    widgets: list[tuple[int, int]] = []
    for ts, value in keyed_records(bootstrap, f"{prefix}.widgets", sid + b"/session_summary"):
        _name, rec = serde.decode(value)
        data: dict[str, Any] = json.loads(rec["data_json"])
        widgets.append((int(data.get("events") or 0), ts))
    per_stage: list[list[float]] = [[] for _ in STAGES]
    for probe in probes:
        n = probe.number
        shown = next((ts for count, ts in widgets if count >= n), None)
        if n > len(ingest) or n > len(events) or shown is None:
            continue
        marks = (probe.posted_us / 1000, ingest[n - 1], events[n - 1], shown,
                 probe.arrived_us / 1000)
        for i, (_label, start, end) in enumerate(STAGES):
            per_stage[i].append(marks[end] - marks[start])
    lines = []
    for (label, _s, _e), values in zip(STAGES, per_stage, strict=True):
        if values:
            lines.append(f"stage {label}: p50 {_pct(values, 0.5):.0f} ms, "
                         f"p99 {_pct(values, 0.99):.0f} ms, max {max(values):.0f} ms "
                         f"({len(values)} probes)")
    return lines
