"""Replay through the real worker: a session goes live (ingest -> redact -> events -> aggregates ->
widgets), is archived by the real archive sink, then `agentwatch replay SESSION --speed 0` puts it
on the replay topic, and the worker's replay agent rebuilds its widgets under the replay's view id.

Compared field for field with the live run's final widgets, except what legitimately depends on
when the worker rendered (named in ``comparable``): ``version`` (how many coalesced updates were
sent), ``session_id`` (the view's own id by design), and, for widgets the final event did not
change, ``timestamp`` and ``file_heatmap``'s ``heat`` (both derived from the last event folded at
the moment the widget was rendered). Every other field is compared exactly.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aggregates_harness import WorkerRun, produce, worker_run
from confluent_kafka import Consumer

from consumers.archive.recordings import load_session
from consumers.archive.targets import open_target
from consumers.archive.testing import SinkProcess, free_port, wait_for
from pipeline.cli import main
from pipeline.model import new_event, now_us
from pipeline.replays import view_session_id
from pipeline.serde import AvroSerde
from pipeline.settings import ArchiveSettings, S3Settings
from processors.widgets.processor import widget_partition
from processors.widgets.reducers import apply, new_state

pytestmark = pytest.mark.integration

_ids = itertools.count()


def simulated_session(sid: str) -> list[dict[str, Any]]:
    """A short coding session touching every widget; its build loop raises an alert live."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("session.started", {"reason": "startup", "cwd": "/repo"}),
        ("user.prompt", {"prompt_length": 42}),
        ("file.read", {"path": "src/lib.rs"}),
    ]
    for i in range(4):
        steps += [("file.write", {"path": f"src/m{i % 2}.rs", "lines_added": 3 + i,
                                  "lines_removed": 1}),
                  ("command.executed", {"binary": "cargo", "args": ["build"], "exit_code": 101,
                                        "duration_ms": 900, "cpu_user_ms": 700,
                                        "peak_memory_mib": 300.0})]
    steps += [
        ("command.executed", {"binary": "cargo", "args": ["build"], "exit_code": 0,
                              "duration_ms": 800, "cpu_user_ms": 600}),
        ("test.executed", {"suite": "tests/it.rs", "test_name": "works", "outcome": "failed",
                           "duration_ms": 120}),
        ("file.write", {"path": "tests/it.rs", "lines_added": 5, "lines_removed": 0}),
        ("test.executed", {"suite": "tests/it.rs", "test_name": "works", "outcome": "passed",
                           "duration_ms": 110}),
        ("llm.request", {"model": "claude-sonnet", "input_tokens": 1500, "output_tokens": 400,
                         "cost_usd": 0.31}),
        ("resource.sample", {"memory_mib": 612.0, "cpu_pct": 41.0, "memory_limit_mib": 2048.0}),
        ("network.request", {"protocol": "https", "domain": "crates.io", "endpoint": "/api",
                             "status_code": 200, "bytes_sent": 120, "bytes_received": 4000}),
        ("agent.task.completed", {"input_description": "fix the build"}),
        ("session.ended", {"reason": "exit"}),
    ]
    t0 = now_us() - 30_000_000
    return [new_event(etype, sid, payload, agent="main", source="hook",
                      timestamp_us=t0 + i * 700_000, event_id=str(uuid.uuid4()),
                      metadata={"user_id": "alice", "n": str(next(_ids))})
            for i, (etype, payload) in enumerate(steps)]


@dataclass
class TopicLog:
    """Every record of a topic from the start, tombstones included (value None)."""

    bootstrap: str
    topic: str
    records: list[tuple[int, bytes, dict[str, Any] | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._serde = AvroSerde()
        self._consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self._consumer.subscribe([self.topic])

    def read_until(self, what: str, done: Callable[[TopicLog], bool], timeout_s: float = 60.0,
                   settle_s: float = 0.0) -> None:
        deadline = time.monotonic() + timeout_s
        settle_at: float | None = None
        while settle_at is None or time.monotonic() < settle_at:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: {what} not seen in {timeout_s:.0f}s; "
                                     f"{len(self.records)} records")
            for msg in self._consumer.consume(500, timeout=0.2):
                if msg.error() is None:
                    value = msg.value()
                    rec = self._serde.decode(value)[1] if value is not None else None
                    self.records.append((msg.partition(), msg.key() or b"", rec))
            if settle_at is None and done(self):
                settle_at = time.monotonic() + settle_s

    def of(self, session_id: str) -> list[dict[str, Any]]:
        return [r for _p, _k, r in self.records if r is not None and r["session_id"] == session_id]

    def latest(self, session_id: str) -> dict[str, dict[str, Any]]:
        return {r["widget"]: r for r in self.of(session_id)}

    def close(self) -> None:
        self._consumer.close()


def comparable(update: dict[str, Any], final: bool) -> dict[str, Any]:
    """The update without what depends on when it was rendered (see the module docstring)."""
    out = {k: v for k, v in update.items() if k not in ("version", "session_id", "data_json")}
    data = json.loads(update["data_json"])
    if not final:
        out.pop("timestamp")
        if update["widget"] == "file_heatmap":
            dirs = [{k: v for k, v in d.items() if k != "heat"} for d in data["directories"]]
            data = {"directories": sorted(dirs, key=lambda d: d["directory"])}
    out["data"] = data
    return out


def events_count(log: TopicLog, session_id: str) -> int:
    summary = log.latest(session_id).get("session_summary")
    return int(json.loads(summary["data_json"])["events"]) if summary else 0


def start_worker(run: WorkerRun, idle_timeout_s: float) -> None:
    run.extra_env.update({
        "AGENTWATCH_TOPICS__REPLAY": run.topic("replay"),
        "AGENTWATCH_WIDGETS__REPLAY_IDLE_TIMEOUT_S": str(idle_timeout_s),
    })
    run.start()


def archive_env(run: WorkerRun, target: str) -> dict[str, str]:
    return {
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": run.bootstrap,
        "AGENTWATCH_TOPICS__EVENTS": run.topic("events"),
        "AGENTWATCH_TOPICS__DLQ": run.topic("dlq"),
        "AGENTWATCH_TOPICS__REPLAY": run.topic("replay"),
        "AGENTWATCH_TOPICS__PARTITIONS": str(run.partitions),
        "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": f"{run.prefix}-archive",
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_AGE_S": "0.3",
        "AGENTWATCH_ARCHIVE__TARGET": target,
        "AGENTWATCH_ARCHIVE_SINK_HTTP__PORT": str(free_port()),
    }


def test_replay_rebuilds_the_live_final_widgets_under_its_own_view(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    idle_timeout_s = 8.0
    with worker_run(kafka_bootstrap, tmp_path) as run:
        start_worker(run, idle_timeout_s)
        target = (tmp_path / "archive").as_uri()
        env = archive_env(run, target)
        sink = SinkProcess(env, tmp_path / "archive-sink.log")
        widgets = TopicLog(kafka_bootstrap, run.topic("widgets"))
        patterns = TopicLog(kafka_bootstrap, run.topic("patterns"))
        try:
            sid = f"sim-{uuid.uuid4().hex[:8]}"
            session = simulated_session(sid)
            produce(kafka_bootstrap, run.topic("ingest"), session)

            # Live: every event folded, then long enough for trailing coalesced updates.
            widgets.read_until("the live session's last event",
                               lambda log: events_count(log, sid) == len(session), settle_s=1.5)
            patterns.read_until("the live build-loop alert", lambda log: any(
                r is not None and r["pattern"] == "compile_fix_loop" for _p, _k, r in log.records))
            archive = open_target(target, S3Settings(), ArchiveSettings())
            wait_for("the session in the archive",
                     lambda: len(load_session(archive, sid).events) == len(session))
        finally:
            sink.terminate()
        live_records = copy.deepcopy(widgets.of(sid))
        alerts_before = len(patterns.records)

        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert main(["replay", sid, "--speed", "0", "--no-clickhouse"]) == 0
        replay_id = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["replay_id"]
        view = view_session_id(replay_id)

        widgets.read_until("the replay view's last event",
                           lambda log: events_count(log, view) == len(session), settle_s=1.5)
        live, replayed = widgets.latest(sid), widgets.latest(view)
        state = new_state(sid)
        for event in session:
            last_changed = apply(state, event)
        assert set(replayed) == set(live) and len(live) == 8
        for widget in live:
            final = widget in last_changed
            assert comparable(replayed[widget], final) == comparable(live[widget], final), widget
        # What was ignored for widgets the last event did not change is still what the live run
        # could have shown: never later than the final event, never before the widget's content.
        assert all(r["timestamp"] <= session[-1]["timestamp"] for r in replayed.values())

        view_records = [(p, k, r) for p, k, r in widgets.records if r is not None
                        and r["session_id"] == view]
        assert {k.decode() for _p, k, _r in view_records} == {f"{view}/{w}" for w in live}
        assert {p for p, _k, _r in view_records} == {widget_partition(view, run.partitions)}
        assert [r["version"] for *_x, r in view_records] == list(range(1, len(view_records) + 1))

        # The live session's records are untouched, and nothing else appeared on the topic.
        assert widgets.of(sid) == live_records
        assert {r["session_id"] for _p, _k, r in widgets.records if r is not None} == {sid, view}

        # The idle view is dropped: a tombstone for each of its widget keys.
        def dropped(log: TopicLog) -> bool:
            tombs = {k.decode() for _p, k, r in log.records if r is None}
            return tombs >= {f"{view}/{w}" for w in live}

        widgets.read_until("the view's tombstones", dropped, timeout_s=idle_timeout_s + 30)
        tombstones = [(p, k) for p, k, r in widgets.records if r is None]
        assert all(k.decode().startswith(f"{view}/") for _p, k in tombstones)
        assert widgets.of(sid) == live_records

        # No pattern ran on the replay: no new alert, for the view or the session.
        patterns.read_until("the settled patterns topic", lambda _log: True, settle_s=1.0)
        assert len(patterns.records) == alerts_before
        health = run.health()
        assert health is not None and health["healthy"] and not health["crashed"]
        widgets.close()
        patterns.close()
