"""`agentwatch sink clickhouse` against real Kafka and a real (private) ClickHouse server:
SIGKILLed twice mid-load, ClickHouse stopped once mid-load, and every offset rewound after the
load (the state a crash between insert and commit leaves): counts stay exactly the events
produced, in the base table, the sessions table and the rollups."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.migrations import apply_migrations, client
from pipeline.serde import AvroSerde
from pipeline.stack.clickhouse import ClickHouseStack
from pipeline.testing import synthetic_events

pytestmark = pytest.mark.integration

TOTAL = 20_000
CHUNKS = 4
PARTITIONS = 3


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    serde = AvroSerde()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "enable.idempotence": True})
    for event in events:
        while True:
            try:
                producer.produce(topic, serde.encode_event(event),
                                 key=event["session_id"].encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                   timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        consumer.close()


def end_offset(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(partitions))
    finally:
        consumer.close()


def rewind(bootstrap: str, group: str, topic: str) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(PARTITIONS)],
                        asynchronous=False)
    finally:
        consumer.close()


def health(sink: Any) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sink.http_port}/health", timeout=2) as r:
            return dict(json.loads(r.read()))
    except OSError as exc:
        body = getattr(exc, "read", None)
        return dict(json.loads(body())) if callable(body) else {}


def test_exactly_once_through_sigkills_and_a_clickhouse_outage(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    private_clickhouse: ClickHouseStack,
    sink_process: Callable[..., Any],
    wait_until: Callable[..., None],
) -> None:
    ch = private_clickhouse.ch
    apply_migrations(ch, "agentwatch")
    events_topic = kafka_topic("events", partitions=PARTITIONS)
    dlq_topic = kafka_topic("dlq")
    group = unique_name("chsink")
    events = synthetic_events(TOTAL, sessions=200, seed=7)
    chunk = TOTAL // CHUNKS
    sink = sink_process({
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AGENTWATCH_TOPICS__EVENTS": events_topic,
        "AGENTWATCH_TOPICS__DLQ": dlq_topic,
        "AGENTWATCH_CLICKHOUSE__PORT": ch.port,
        "AGENTWATCH_CLICKHOUSE__HTTP_PORT": ch.http_port,
        "AGENTWATCH_CLICKHOUSE__DATABASE": "agentwatch",
        "AGENTWATCH_CLICKHOUSE_SINK__GROUP_ID": group,
        "AGENTWATCH_CLICKHOUSE_SINK__BATCH_MAX_RECORDS": 1000,
        "AGENTWATCH_CLICKHOUSE_SINK__BATCH_MAX_AGE_S": 0.2,
        "AGENTWATCH_CLICKHOUSE_SINK__LOAD_PATTERNS": "false",
        "AGENTWATCH_CLICKHOUSE_SINK__LOAD_DEAD_LETTERS": "false",
        "AGENTWATCH_CLICKHOUSE_SINK__RETRY_INITIAL_S": 0.2,
        "AGENTWATCH_CLICKHOUSE_SINK__RETRY_MAX_S": 1.0,
        "AGENTWATCH_CLICKHOUSE_SINK__INSERT_TIMEOUT_S": 5,
        # A SIGKILLed member holds its partitions until the session times out.
        "AGENTWATCH_CLICKHOUSE_SINK__SESSION_TIMEOUT_S": 6,
    })
    db = client(ch, "agentwatch")

    def count() -> int:
        try:
            return int(db.execute("SELECT count() FROM telemetry_events")[0][0])
        except Exception:  # the server is down during the outage phase
            db.disconnect()
            return -1

    # 1st SIGKILL, mid-load.
    produce(kafka_bootstrap, events_topic, events[:chunk])
    sink.start()
    wait_until(lambda: count() >= chunk // 3, 60, "first rows")
    sink.kill()
    # 2nd SIGKILL: more events arrived while it was down.
    produce(kafka_bootstrap, events_topic, events[chunk:2 * chunk])
    sink.start()
    wait_until(lambda: count() >= chunk + chunk // 2, 60, "rows after the first restart")
    sink.kill()
    # ClickHouse goes away under a running sink, events keep coming, ClickHouse comes back.
    produce(kafka_bootstrap, events_topic, events[2 * chunk:3 * chunk])
    sink.start()
    wait_until(lambda: count() >= 2 * chunk + chunk // 3, 60, "rows after the second restart")
    private_clickhouse.stop()
    produce(kafka_bootstrap, events_topic, events[3 * chunk:])
    wait_until(lambda: health(sink).get("loaders", {}).get("telemetry_events", {})
               .get("consecutive_failures", 0) >= 2, 60, "the sink to notice the outage")
    assert health(sink)["healthy"] is True  # degraded, retrying, alive: not a crash loop
    private_clickhouse.start()
    private_clickhouse.wait_ready(60)
    wait_until(lambda: committed_total(kafka_bootstrap, group, events_topic) == TOTAL, 90,
               "every offset committed after the outage")

    def exact_everywhere() -> None:
        assert count() == TOTAL
        assert db.execute("SELECT uniqExact(event_id) FROM telemetry_events")[0][0] == TOTAL
        assert db.execute("SELECT count() FROM telemetry_events FINAL")[0][0] == TOTAL
        assert db.execute("SELECT sum(events) FROM events_hourly")[0][0] == TOTAL
        assert db.execute("SELECT sum(events) FROM sessions FINAL")[0][0] == TOTAL
        llm = sum(1 for e in events if e["event_type"] == "llm.request")
        assert db.execute("SELECT sum(requests) FROM llm_usage_hourly")[0][0] == llm
        builds = sum(1 for e in events if e["event_type"] == "build.completed")
        assert db.execute("SELECT countMerge(builds) FROM build_durations_hourly")[0][0] == builds
        stored = db.execute("SELECT sum(o) FROM (SELECT max(next_offset) AS o FROM sink_offsets "
                            "GROUP BY kafka_topic, kafka_partition)")[0][0]
        assert stored == TOTAL

    exact_everywhere()
    assert end_offset(kafka_bootstrap, dlq_topic, 1) == 0  # nothing was refused
    assert sink.terminate() == 0  # SIGTERM: last flush, commit, clean exit

    # Offsets rewound to 0 = ClickHouse holds rows whose offsets Kafka never saw committed.
    rewind(kafka_bootstrap, group, events_topic)
    sink.start()
    wait_until(lambda: committed_total(kafka_bootstrap, group, events_topic) == TOTAL, 60,
               "the replayed offsets to be committed")
    metrics = sink.metrics()
    assert ('agentwatch_clickhouse_rows_already_stored_total{table="telemetry_events"} '
            f"{float(TOTAL)}") in metrics
    assert 'agentwatch_clickhouse_rows_inserted_total{table="telemetry_events"} 0.0' in metrics
    exact_everywhere()
    assert sink.terminate() == 0
    db.disconnect()
