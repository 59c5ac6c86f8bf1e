"""A worker subprocess on unique topics, a producer of scripted events, readers of its outputs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from pipeline.serde import AvroSerde

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerRun:
    """One worker configuration; ``start()`` may be called again after a kill (same app id)."""

    bootstrap: str
    prefix: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    partitions: int = 2
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    _log: Any = None

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update({
            "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "AGENTWATCH_TOPICS__INGEST": self.topic("ingest"),
            "AGENTWATCH_TOPICS__EVENTS": self.topic("events"),
            "AGENTWATCH_TOPICS__WIDGETS": self.topic("widgets"),
            "AGENTWATCH_TOPICS__PATTERNS": self.topic("patterns"),
            "AGENTWATCH_TOPICS__DLQ": self.topic("dlq"),
            "AGENTWATCH_TOPICS__REPLAY": self.topic("replay"),
            "AGENTWATCH_TOPICS__PARTITIONS": str(self.partitions),
            "AGENTWATCH_WORKER__APP_ID": self.prefix,
            "AGENTWATCH_WORKER_HTTP__PORT": str(self.port),
            "AGENTWATCH_STACK__DIR": str(self.workdir),
            "AGENTWATCH_LOG_FORMAT": "text",
            **self.extra_env,
        })
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        self.runs += 1
        self._close_log()
        self._log = (self.workdir / f"worker-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"], cwd=REPO, env=self.env(),
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}: {self.log_tail()}")
            health = self.health()
            if health and health.get("healthy") and health.get("assigned_partitions"):
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout_s}s: {self.log_tail()}")

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return dict(json.loads(r.read()))
        except Exception:
            return None

    def metric(self, prefix: str) -> float:
        """Sum of the worker's samples whose line starts with ``prefix`` (0 when unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(prefix))

    def log_tail(self, n: int = 4000) -> str:
        logs = sorted(self.workdir.glob("worker-*.log"))
        return logs[-1].read_text(errors="replace")[-n:] if logs else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()

    def delete_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result()


@contextlib.contextmanager
def worker_run(bootstrap: str, workdir: Path, **kw: Any) -> Iterator[WorkerRun]:
    run = WorkerRun(bootstrap=bootstrap, prefix=f"agg{uuid.uuid4().hex[:10]}", workdir=workdir, **kw)
    try:
        yield run
    finally:
        run.stop()
        run.delete_topics()


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    serde = AvroSerde()
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "partitioner": "murmur2_random"})
    for event in events:
        producer.produce(topic, key=event["session_id"].encode(), value=serde.encode_event(event))
    assert producer.flush(30) == 0


@dataclass
class Reader:
    """Reads a topic from the beginning, decoded, keeping every record in arrival order."""

    bootstrap: str
    topic: str
    records: list[tuple[int, bytes | None, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._serde = AvroSerde()
        self._consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "isolation.level": "read_committed"})
        self._consumer.subscribe([self.topic])

    def poll_until(self, done: Callable[[Reader], bool], timeout_s: float,
                   settle_s: float = 0.0) -> None:
        """Read until ``done`` holds (then ``settle_s`` more, to catch extras) or fail at timeout."""
        deadline = time.monotonic() + timeout_s
        settle_at: float | None = None
        while True:
            now = time.monotonic()
            if settle_at is not None and now >= settle_at:
                return
            if now >= deadline:
                raise AssertionError(f"{self.topic}: condition not met in {timeout_s}s; "
                                     f"{len(self.records)} records read; {self._summaries()}")
            msg = self._consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                _name, rec = self._serde.decode(msg.value())
                self.records.append((msg.partition(), msg.key(), rec))
            if settle_at is None and done(self):
                settle_at = time.monotonic() + settle_s

    def _summaries(self) -> str:
        """Events counted by each session's last summary: where a stalled run stopped."""
        counts = {rec.get("session_id"): json.loads(rec["data_json"]).get("events")
                  for _p, _k, rec in self.records if rec.get("widget") == "session_summary"}
        return f"last session_summary event counts {counts}" if counts else "no session_summary"

    def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        """WidgetUpdates: the last record per (session, widget), data decoded."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for _p, _k, rec in self.records:
            out[(rec["session_id"], rec["widget"])] = {**rec, "data": json.loads(rec["data_json"])}
        return out

    def latest_each(self, session_id: str, widget: str) -> list[dict[str, Any]]:
        """Every update of one widget in arrival order, data decoded."""
        return [{**rec, "data": json.loads(rec["data_json"])} for _p, _k, rec in self.records
                if rec.get("session_id") == session_id and rec.get("widget") == widget]

    def close(self) -> None:
        self._consumer.close()
