"""The real pipeline on private topics for the gateway tests: a worker and a collector as
subprocesses (as `agentwatch up` runs them), and an independent reader of the widgets topic."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from gateway_support import free_port

from pipeline.serde import AvroSerde

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Component:
    """One ``python -m pipeline.cli <command>`` process, ready once its /health says so."""

    command: str
    env: dict[str, str]
    port: int
    log_path: Path
    ready: Callable[[dict[str, Any]], bool]
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", self.command],
                                         cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.command} exited with {self.proc.returncode}: "
                                     f"{self.log_tail()}")
            health = self.health()
            if health is not None and self.ready(health):
                return
            time.sleep(0.3)
        raise AssertionError(f"{self.command} not ready in {timeout_s}s: {self.log_tail()}")

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return dict(json.loads(r.read()))
        except Exception:
            return None

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Pipeline:
    """Collector -> ingest -> worker -> widgets/patterns, all on topics named ``prefix.*``."""

    bootstrap: str
    workdir: Path
    owner: str
    partitions: int = 2
    prefix: str = field(default_factory=lambda: f"gwpipe{uuid.uuid4().hex[:10]}")
    worker: Component | None = None
    collector: Component | None = None

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update({
            "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            **{f"AGENTWATCH_TOPICS__{n.upper()}": self.topic(n)
               for n in ("ingest", "events", "widgets", "patterns", "dlq", "replay")},
            "AGENTWATCH_TOPICS__PARTITIONS": str(self.partitions),
            "AGENTWATCH_STACK__DIR": str(self.workdir),
            "AGENTWATCH_LOG_FORMAT": "text",
            **extra,
        })
        return env

    def start(self) -> None:
        # The worker first: it creates the private topics the collector writes to.
        wport, cport = free_port(), free_port()
        self.worker = Component("worker", self._env(
            AGENTWATCH_WORKER__APP_ID=self.prefix, AGENTWATCH_WORKER_HTTP__PORT=str(wport)),
            wport, self.workdir / "worker.log",
            lambda h: bool(h.get("healthy") and h.get("assigned_partitions")))
        self.worker.start()
        # Consent off: the collector would otherwise read the shared ClickHouse consent table.
        self.collector = Component("collector", self._env(
            AGENTWATCH_COLLECTOR__PORT=str(cport), AGENTWATCH_PRIVACY__USER_ID=self.owner,
            AGENTWATCH_PRIVACY__CONSENT_ENABLED="false"),
            cport, self.workdir / "collector.log", lambda h: bool(h.get("healthy", True)))
        self.collector.start()

    @property
    def collector_url(self) -> str:
        assert self.collector is not None
        return f"http://127.0.0.1:{self.collector.port}"

    def stop(self) -> None:
        for part in (self.collector, self.worker):
            if part is not None:
                part.stop()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result()


@contextlib.contextmanager
def running_pipeline(bootstrap: str, workdir: Path, owner: str) -> Iterator[Pipeline]:
    pipe = Pipeline(bootstrap, workdir, owner)
    try:
        pipe.start()
        yield pipe
    finally:
        pipe.stop()


class WidgetsReader:
    """Reads the widgets topic (read committed, from the beginning) on its own: what the worker
    published, to hold the gateway's snapshot and updates against."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._serde = AvroSerde()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "isolation.level": "read_committed"})
        self._consumer.subscribe([topic])
        self.records: list[dict[str, Any]] = []

    def read_until(self, done: Callable[[WidgetsReader], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"widgets topic: condition not met in {timeout_s}s")
            for msg in self._consumer.consume(500, 0.2):
                value = msg.value()
                if msg.error() is None and value is not None:
                    _name, rec = self._serde.decode(value)
                    self.records.append(rec)

    def updates(self, session_id: str) -> list[dict[str, Any]]:
        """The session's WidgetUpdates in topic order, data decoded."""
        return [{**r, "data": json.loads(r["data_json"])} for r in self.records
                if r["session_id"] == session_id]

    def latest(self, session_id: str) -> dict[str, dict[str, Any]]:
        return {u["widget"]: u for u in self.updates(session_id)}

    def close(self) -> None:
        self._consumer.close()
