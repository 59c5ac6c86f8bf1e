"""The sink's three loaders in one process against real Kafka and ClickHouse: events, pattern
alerts, and the dead letters the events loader itself produced for bytes it could not read and
for an event ClickHouse cannot store."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from consumers.clickhouse.sink import serve
from pipeline.migrations import apply_migrations, client
from pipeline.model import PATTERN_ALERT, new_event, now_us
from pipeline.serde import AvroSerde
from pipeline.settings import ClickHouseSettings, load_settings

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(query: Callable[[], Any], expected: Any, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await asyncio.to_thread(query)
        if last == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {expected!r}, last saw {last!r}")


async def test_events_alerts_and_dead_letters_are_loaded(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    clickhouse: ClickHouseSettings,
    clickhouse_db: str,
) -> None:
    apply_migrations(clickhouse, clickhouse_db)
    topics = {"events": kafka_topic("events"), "patterns": kafka_topic("patterns"),
              "dlq": kafka_topic("dlq")}
    serde = AvroSerde()
    good = [new_event("command.executed", "sess-a", {"binary": "pytest", "exit_code": i % 2,
                                                     "duration_ms": 10 * i}) for i in range(5)]
    unstorable = new_event("file.read", "sess-a", {"path": "x"}, timestamp_us=-1_000_000)
    unstorable_bytes = serde.encode_event(unstorable)
    t0 = now_us()
    alert = {"alert_id": "11111111-2222-3333-4444-555555555555", "pattern": "retry_loop",
             "session_id": "sess-a", "agent": "claude-code", "severity": "warning",
             "window_start": t0 - 60_000_000, "window_end": t0, "evidence_event_ids": ["e1"],
             "message": "same command failed 5 times", "suggested_mitigation": None,
             "detected_at": t0}
    other_alert = {**alert, "alert_id": "99999999-2222-3333-4444-555555555555",
                   "pattern": "test_flake"}

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for event in good[:3]:
        producer.produce(topics["events"], serde.encode_event(event), key=b"sess-a")
    producer.produce(topics["events"], b"not avro password=hunter2", key=b"sess-a")
    producer.produce(topics["events"], unstorable_bytes, key=b"sess-a")
    for event in good[3:]:
        producer.produce(topics["events"], serde.encode_event(event), key=b"sess-a")
    # The same detection twice (a replayed window) and a second alert.
    for record in (alert, alert, other_alert):
        producer.produce(topics["patterns"], serde.encode(PATTERN_ALERT, record), key=b"sess-a")
    assert producer.flush(30) == 0

    settings = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap},
        topics={"events": topics["events"], "patterns": topics["patterns"], "dlq": topics["dlq"]},
        clickhouse=clickhouse.model_copy(update={"database": clickhouse_db}),
        clickhouse_sink={"group_id": unique_name("chsink"), "batch_max_age_s": 0.2},
        clickhouse_sink_http={"port": free_port()},
        log_format="text",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    db = client(clickhouse, clickhouse_db)
    try:
        await check(db, stop, task, topics, unstorable_bytes)
    finally:
        db.disconnect()


async def check(db: Any, stop: asyncio.Event, task: asyncio.Task[int], topics: dict[str, str],
                unstorable_bytes: bytes) -> None:
    try:
        await eventually(lambda: db.execute("SELECT count() FROM telemetry_events")[0][0], 5)
        await eventually(lambda: db.execute("SELECT count() FROM dead_letters")[0][0], 2)
        await eventually(lambda: db.execute("SELECT count() FROM pattern_alerts FINAL")[0][0], 2)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 60) == 0

    letters = {row[0]: row[1:] for row in db.execute(
        "SELECT error_kind, stage, source_topic, source_offset, session_id, original_bytes, "
        "original_text FROM dead_letters", settings={"strings_as_bytes": True})}
    decode = letters[b"bad_magic"]  # a DecodeError kind: the bytes are not single-object Avro
    assert decode[:4] == (b"clickhouse_sink.telemetry_events", topics["events"].encode(), 3,
                          b"sess-a")
    assert decode[4] == b""  # undecodable bytes are never stored...
    assert b"hunter2" not in decode[5] and decode[5]  # ...only a redacted excerpt
    rejected = letters[b"sink_rejected"]
    assert rejected[2] == 4 and rejected[4] == unstorable_bytes  # decodable: kept for replay
    assert db.execute("SELECT sum(events), sum(commands_failed) FROM sessions FINAL") == [(5, 2)]
    assert sorted(db.execute("SELECT pattern FROM pattern_alerts FINAL")) == [
        ("retry_loop",), ("test_flake",)]
