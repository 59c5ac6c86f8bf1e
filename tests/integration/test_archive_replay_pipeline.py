"""Replay through the real pipeline: events topic -> archive sink (moto S3 over HTTP) ->
`agentwatch replay` -> replay topic; and the ClickHouse fallback when the archive has nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumers.archive.clickhouse_source import ClickHouseEventSource
from consumers.archive.replay import REPLAY_ID, is_replay, mark_replay
from consumers.archive.testing import EventsTopic, SinkProcess, free_port, sample_session, wait_for
from pipeline.cli import main
from pipeline.serde import AvroSerde
from pipeline.settings import ClickHouseSettings
from processors.widgets.reducers import WIDGETS, apply, new_state, render

pytestmark = pytest.mark.integration

SERDE = AvroSerde()


def read_topic(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, dict[str, str],
                                                                     dict[str, Any]]]:
    """``count`` messages of a topic from the start: (key, headers, decoded event)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, dict[str, str], dict[str, Any]]] = []
    try:
        def more() -> bool:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    raw_headers: list[tuple[str, bytes]] = list(msg.headers() or [])  # type: ignore[arg-type]
                    headers = {k: (v or b"").decode() for k, v in raw_headers}
                    out.append((msg.key(), headers, SERDE.decode_event(msg.value() or b"")))
            return len(out) >= count
        wait_for(f"{count} messages on {topic}", more)
    finally:
        consumer.close()
    return out


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4().hex}"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
    finally:
        consumer.close()


def fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    state = new_state(events[0]["session_id"])
    for event in events:
        apply(state, event)
    return {widget: render(state, widget) for widget in WIDGETS}


def test_replayed_stream_equals_the_recording_and_rebuilds_the_live_widgets(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], s3_endpoint: str, tmp_path: Path,
    unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    events_topic = kafka_topic("replay.events", partitions=3)
    replay_topic = kafka_topic("replay.out", partitions=3)
    bucket = unique_name("replay").replace("_", "-")[:60]
    group = unique_name("archive")
    env = {
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AGENTWATCH_TOPICS__EVENTS": events_topic,
        "AGENTWATCH_TOPICS__DLQ": kafka_topic("replay.dlq"),
        "AGENTWATCH_TOPICS__REPLAY": replay_topic,
        "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": group,
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_AGE_S": "0.3",
        "AGENTWATCH_ARCHIVE__TARGET": f"s3://{bucket}/rec",
        "AGENTWATCH_ARCHIVE__CREATE_BUCKET": "true",
        "AGENTWATCH_S3__ENDPOINT_URL": s3_endpoint,
        "AGENTWATCH_ARCHIVE_SINK_HTTP__PORT": str(free_port()),
    }
    sid = f"replayed-{uuid.uuid4().hex[:8]}"
    session = sample_session(sid, 240, span_s=3600.0)
    topic = EventsTopic(kafka_bootstrap, events_topic, group, partitions=3)
    sink = SinkProcess(env, tmp_path / "sink.log")
    try:
        topic.produce(session)
        wait_for("the session to be archived", lambda: topic.committed() == len(session))
    finally:
        sink.terminate()
        topic.close()
    live = [event for _k, _h, event in read_topic(kafka_bootstrap, events_topic, len(session))]
    live_before = end_offsets(kafka_bootstrap, events_topic, 3)

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["replay", sid, "--speed", "0", "--no-clickhouse"]) == 0
    replayed = read_topic(kafka_bootstrap, replay_topic, len(session))

    replay_id = replayed[0][2]["metadata"][REPLAY_ID]
    assert [event for _k, _h, event in replayed] == [mark_replay(e, replay_id) for e in session]
    assert all(key == sid.encode() and headers[REPLAY_ID] == replay_id
               for key, headers, _e in replayed)
    assert all(is_replay(event) for _k, _h, event in replayed)
    # The live topic saw nothing of the replay.
    assert end_offsets(kafka_bootstrap, events_topic, 3) == live_before
    # The widget reducers fold the replayed stream into exactly the live run's widgets.
    replayed_widgets = fold([event for _k, _h, event in replayed])
    assert replayed_widgets == fold(live)
    assert replayed_widgets["session_summary"] != fold(live[:120])["session_summary"]

    # A paced replay of a time range: 5 minutes of the session at 300x.
    assert main(["replay", sid, "--speed", "300", "--from", "+10m", "--to", "+15m",
                 "--no-clickhouse"]) == 0
    first = session[0]["timestamp"]
    in_range = [e for e in session if first + 600_000_000 <= e["timestamp"] <= first + 900_000_000]
    paced = read_topic(kafka_bootstrap, replay_topic, len(session) + len(in_range))[len(session):]
    paced_id = paced[0][2]["metadata"][REPLAY_ID]
    assert paced_id != replay_id
    assert [event for _k, _h, event in paced] == [mark_replay(e, paced_id) for e in in_range]


def test_clickhouse_fallback_rebuilds_the_session(clickhouse: ClickHouseSettings,
                                                  clickhouse_db: str) -> None:
    from consumers.clickhouse.rows import EVENT_COLUMNS, event_row
    from pipeline.migrations import apply_migrations, client

    apply_migrations(clickhouse, clickhouse_db)
    sid = f"ch-{uuid.uuid4().hex[:8]}"
    session = sample_session(sid, 50, span_s=600.0)
    other = sample_session("someone-else", 5)
    rows = [event_row(e, "events", 0, i) for i, e in enumerate([*session[:30], *other,
                                                                   *session[30:]])]
    conn = client(clickhouse, clickhouse_db)
    try:
        conn.execute(f"INSERT INTO telemetry_events ({', '.join(EVENT_COLUMNS)}) VALUES", rows)
    finally:
        conn.disconnect()
    loaded = ClickHouseEventSource(clickhouse, clickhouse_db).load(sid)
    assert loaded == session
    assert ClickHouseEventSource(clickhouse, clickhouse_db).load("absent") is None
