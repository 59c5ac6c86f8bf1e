"""Accounting of a reliability run: what the simulator sent, and what each store ended up holding.

Every reader returns plain data (event ids per session, raw bytes per place) so a test can state
the exact equality it proves: produced = ClickHouse = archive, per session, and no canary
anywhere downstream of redaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import urllib.parse
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability_harness import Pipeline, wait_until

from pipeline.serde import AvroSerde
from pipeline.settings import ClickHouseSettings
from producers.simulator.driver import Driver, DriveStats, Target
from producers.simulator.script import SessionScript


def expected_per_session(scripts: Iterable[SessionScript]) -> dict[str, int]:
    """Events the collector must publish per session (the simulator's per-step truth)."""
    return {s.session_id: sum(len(step.expect) for step in s.steps) for s in scripts}


def canaries_of(scripts: Iterable[SessionScript]) -> set[str]:
    return {c.value for s in scripts for step in s.steps for c in step.canaries}


def drive(collector_url: str, scripts: list[SessionScript], rate: float | None = None) -> DriveStats:
    """Play every script, one lane per session, against the collector; all must be accepted.
    ``rate`` (payloads/s over all lanes) stretches the run so a fault can land in its middle."""
    driver = Driver(Target.from_base(collector_url), rate=rate, lanes=len(scripts), give_up_s=90.0)
    stats = asyncio.run(driver.run(lambda index: scripts[index]))
    assert stats.failed == 0, stats.to_json()
    return stats


# --- ClickHouse -----------------------------------------------------------------------------


def ch_http(ch: ClickHouseSettings, query: str) -> bytes:
    """One query over HTTP (any table engine prints as text there, aggregate states included)."""
    params = urllib.parse.urlencode({"user": ch.user, "password": ch.password.get_secret_value()})
    req = urllib.request.Request(f"http://{ch.host}:{ch.http_port}/?{params}", data=query.encode())
    with urllib.request.urlopen(req, timeout=60) as resp:
        return bytes(resp.read())


def ch_event_ids(line: Pipeline) -> dict[str, list[str]]:
    """session_id -> every event_id row of telemetry_events (no FINAL: duplicates stay visible)."""
    text = ch_http(line.clickhouse, f"SELECT session_id, toString(event_id) FROM "
                                   f"{line.database}.telemetry_events FORMAT TabSeparated").decode()
    out: dict[str, list[str]] = defaultdict(list)
    for row in text.splitlines():
        session, event_id = row.split("\t")
        out[session].append(event_id)
    return dict(out)


def ch_dump(line: Pipeline) -> dict[str, bytes]:
    """Every table of the pipeline's database, as TabSeparated text."""
    names = ch_http(line.clickhouse, f"SELECT name FROM system.tables WHERE database = "
                                    f"'{line.database}' AND engine NOT LIKE '%View' "
                                    f"FORMAT TabSeparated").decode().split()
    return {name: ch_http(line.clickhouse,
                          f"SELECT * FROM {line.database}.`{name}` FORMAT TabSeparated")
            for name in names}


# --- Archive --------------------------------------------------------------------------------


@dataclass
class ArchiveView:
    recordings: dict[str, list[str]] = field(default_factory=dict)
    """session_id -> event_ids of its compacted recording, line by line."""
    segments: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """session_id -> event_ids in segments not compacted yet."""
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def distinct(self, session_id: str) -> set[str]:
        return set(self.recordings.get(session_id, ())) | set(self.segments.get(session_id, ()))


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error):
        return []  # being written right now (temp file): read again on the next poll
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def read_archive(root: Path) -> ArchiveView:
    view = ArchiveView()
    for path in sorted((root / "sessions").rglob("*.jsonl.gz")):
        lines = _lines(path)
        if lines:
            view.recordings.setdefault(lines[0]["session_id"], []).extend(
                ln["event_id"] for ln in lines)
    for path in sorted((root / "segments").rglob("*.jsonl.gz")):
        for ln in _lines(path):
            view.segments[ln["session_id"]].append(ln["event_id"])
    for path in sorted((root / "index").rglob("*.json")):
        with_manifest = json.loads(path.read_text())
        view.manifests[with_manifest["session_id"]] = with_manifest
    return view


def archive_files(root: Path) -> dict[str, bytes]:
    """Every file under the archive, gzip members decompressed (raw bytes if that fails)."""
    out: dict[str, bytes] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            with contextlib.suppress(OSError, EOFError, zlib.error):
                data = gzip.decompress(data)
        out[str(path.relative_to(root))] = data
    return out


# --- Kafka ----------------------------------------------------------------------------------


def topic_messages(bootstrap: str, topic: str, *, committed_only: bool = False) -> list[Any]:
    """Every message of ``topic`` from the start; read_uncommitted unless asked (aborted writes
    count too when looking for leaks)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"rel-read-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        "fetch.message.max.bytes": 64 * 1024 * 1024,
    })
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        consumer.assign(parts)
        out: list[Any] = []
        idle = 0
        # Transaction markers take offsets too, so "caught up" is the position, not the last
        # message; two empty polls in a row also end the read.
        while idle < 2:
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] for tp in positions):
                break
            batch = consumer.consume(5000, 0.5)
            idle = 0 if batch else idle + 1
            out.extend(m for m in batch if not m.error())
        return out
    finally:
        consumer.close()


def list_topics(bootstrap: str, prefix: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix))


# --- Exact accounting -----------------------------------------------------------------------

SETTLE_TIMEOUT_S = 120.0


def settled(line: Pipeline, expected: dict[str, int]) -> bool:
    in_ch = ch_event_ids(line)
    view = read_archive(line.archive_root())
    return all(len(set(in_ch.get(s, ()))) == n and len(set(view.recordings.get(s, ()))) == n
               for s, n in expected.items())


def assert_exact(line: Pipeline, expected: dict[str, int], *, all_sessions: bool = True,
                 events_topic_exact: bool = True) -> None:
    """Per session: expected = distinct = rows in ClickHouse = recording lines; no duplicates.
    ``all_sessions``: ClickHouse holds nothing else. ``events_topic_exact``: the committed events
    topic holds each expected event exactly once (the worker's exactly-once, not only the sinks'
    dedupe by event_id)."""
    try:
        wait_until(lambda: settled(line, expected), SETTLE_TIMEOUT_S,
                   "ClickHouse and the archive to hold every expected event")
    except AssertionError as exc:
        stored, now = ch_event_ids(line), read_archive(line.archive_root())
        short = {s: {"expected": n, "clickhouse": len(set(stored.get(s, ()))),
                     "recording": len(set(now.recordings.get(s, ()))),
                     "segments": len(set(now.segments.get(s, ())))}
                 for s, n in expected.items()}
        health = {name: c.health() for name, c in line.components.items()}
        stages = _stage_counts(line, [s for s, v in short.items() if v["clickhouse"] < v["expected"]])
        raise AssertionError(f"{exc}\nper session: {short}\nshort sessions per topic: {stages}"
                             f"\nhealth: {health}") from None
    in_ch = ch_event_ids(line)
    view: ArchiveView = read_archive(line.archive_root())
    if all_sessions:
        assert set(in_ch) == set(expected), "sessions in ClickHouse differ from the simulated ones"
    for session, n in expected.items():
        rows = in_ch[session]
        assert not duplicates(rows), f"{session}: duplicate rows in ClickHouse"
        assert len(rows) == n
        recording = view.recordings[session]
        assert not duplicates(recording), f"{session}: duplicate lines in the recording"
        assert len(recording) == n
        assert set(recording) == set(rows), f"{session}: archive and ClickHouse hold other events"
        assert view.manifests[session]["events"] == n and view.manifests[session]["ended"]
    if all_sessions and events_topic_exact:
        # Everything the worker published is accounted for, exactly once.
        events = topic_messages(line.kafka_bootstrap, line.topics["events"], committed_only=True)
        ids = [AvroSerde().decode_event(m.value())["event_id"] for m in events]
        doubled = duplicates(ids)
        assert len(events) == sum(expected.values()) and not doubled, (
            f"events topic: {len(events)} messages, {len(set(ids))} distinct, expected "
            f"{sum(expected.values())}; {len(doubled)} event ids more than once")


def _stage_counts(line: Pipeline, sessions: list[str]) -> dict[str, Any]:
    """Messages per short session on each topic, to tell which stage lost an event, and the
    ingest position and type of the events that never reached the events topic."""
    serde = AvroSerde()
    counts: dict[str, Any] = {s: {} for s in sessions}
    ingest: dict[str, tuple[int, int, str]] = {}
    published: set[str] = set()
    for label, topic, committed in (("ingest", "ingest", False), ("events", "events", True),
                                    ("events_uncommitted", "events", False), ("dlq", "dlq", False)):
        for message in topic_messages(line.kafka_bootstrap, line.topics[topic],
                                      committed_only=committed):
            key = (message.key() or b"").decode(errors="replace")
            if key not in counts:
                continue
            counts[key][label] = counts[key].get(label, 0) + 1
            if label in ("ingest", "events_uncommitted"):
                with contextlib.suppress(Exception):
                    event = serde.decode_event(message.value())
                    if label == "ingest":
                        ingest[event["event_id"]] = (message.partition(), message.offset(),
                                                     event["event_type"])
                    else:
                        published.add(event["event_id"])
    counts["missing (partition, offset, type)"] = sorted(
        v for k, v in ingest.items() if k not in published)
    for name, component in line.components.items():
        if name.startswith("worker"):
            with contextlib.suppress(Exception):
                counts[f"{name} messages/rewinds"] = (
                    component.metric_sum("agentwatch_worker_messages_total{"),
                    component.metric_sum("agentwatch_worker_rewinds_total"))
    return counts


# --- Leaks ----------------------------------------------------------------------------------


def find_canaries(places: dict[str, bytes], canaries: Iterable[str]) -> list[tuple[str, str]]:
    """(place, canary) for every canary found in a place's bytes."""
    wanted = [c.encode() for c in canaries]
    return [(place, c.decode()) for place, data in places.items() for c in wanted if c in data]


def downstream_places(line: Pipeline, *, include_ingest: bool = False) -> dict[str, bytes]:
    """Bytes of everything after redaction: topics (not ingest), ClickHouse, archive, every
    component's log, and every WebSocket message the gateway sent to the recording client."""
    places: dict[str, bytes] = {}
    if line.recorder is not None:
        ws = line.recorder.places()
        # The scan must have something to look at: the recording client saw widget data.
        assert line.recorder.sessions_with_widgets(), (
            f"the WebSocket recorder got no widget data ({len(ws)} frames; "
            f"errors {line.recorder.errors[-3:]})")
        places.update(ws)
    for topic in list_topics(line.kafka_bootstrap, line.prefix):
        if topic == line.topics["ingest"] and not include_ingest:
            continue
        for msg in topic_messages(line.kafka_bootstrap, topic):
            places[f"kafka:{topic}:{msg.partition()}:{msg.offset()}"] = (
                (msg.key() or b"") + b"\0" + (msg.value() or b""))
    places.update({f"clickhouse:{t}": data for t, data in ch_dump(line).items()})
    places.update({f"archive:{k}": data for k, data in archive_files(line.archive_root()).items()})
    places.update({f"log:{p.name}": p.read_bytes() for p in line.logs()})
    return places


def duplicates(ids: Iterable[str]) -> dict[str, int]:
    return {i: n for i, n in Counter(ids).items() if n > 1}
