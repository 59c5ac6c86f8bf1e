"""Shared by the replay-view integration tests: a simulated session, a topic log that keeps
tombstones, the comparison of widget updates, and the worker/archive-sink configuration."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregates_harness import WorkerRun, produce
from confluent_kafka import Consumer

from consumers.archive.recordings import load_session
from consumers.archive.targets import open_target
from consumers.archive.testing import SinkProcess, free_port, wait_for
from pipeline.model import new_event, now_us
from pipeline.serde import AvroSerde
from pipeline.settings import ArchiveSettings, S3Settings

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
                    self.records.append((msg.partition() or 0, msg.key() or b"", rec))
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


def go_live_and_archive(run: WorkerRun, target: str, log_dir: Path, widgets: TopicLog,
                        sid: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Send a simulated session through the running worker and the real archive sink; returns
    once its live widgets are final and its recording holds every event: (events, sink env)."""
    session = simulated_session(sid)
    env = archive_env(run, target)
    sink = SinkProcess(env, log_dir / "archive-sink.log")
    try:
        produce(run.bootstrap, run.topic("ingest"), session)
        # Every event folded, then long enough for the trailing coalesced updates.
        widgets.read_until("the live session's last event",
                           lambda log: events_count(log, sid) == len(session), settle_s=1.5)
        archive = open_target(target, S3Settings(), ArchiveSettings())
        wait_for("the session in the archive",
                 lambda: len(load_session(archive, sid).events) == len(session))
    finally:
        sink.terminate()
    return session, env
