"""`agentwatch up / down / status`: the local stack as one unit.

``up`` is idempotent: it installs what is missing, starts what is not running, creates missing
topics, applies pending migrations and leaves everything already healthy alone. A file lock keeps
two concurrent ``up`` calls (say, two pytest sessions) from starting the same service twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import PrerequisiteError
from pipeline.migrations import apply_migrations
from pipeline.settings import Settings
from pipeline.stack.clickhouse import ClickHouseStack
from pipeline.stack.components import COMPONENTS, ComponentSpec
from pipeline.stack.kafka import KafkaStack
from pipeline.stack.process import ManagedProcess, wait_for
from pipeline.stack.s3 import S3Stack
from pipeline.topics import ensure_topics, topic_specs


@dataclass
class ServiceStatus:
    name: str
    healthy: bool
    running: bool
    pid: int | None
    endpoint: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StackReport:
    services: list[ServiceStatus] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(s.healthy for s in self.services)

    def to_json(self) -> str:
        return json.dumps(
            {"healthy": self.healthy, "services": [s.as_dict() for s in self.services]}, indent=2
        )


class LocalStack:
    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.kafka = KafkaStack(settings.stack)
        self.clickhouse = ClickHouseStack(settings.stack, settings.clickhouse)
        self.s3 = S3Stack(settings.stack)
        self.dir = settings.stack.dir

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _component_process(self, spec: ComponentSpec) -> ManagedProcess:
        return ManagedProcess(spec.name, self.dir / "run", self.dir / "logs")

    # -- up ------------------------------------------------------------------------------
    def up_services(self) -> None:
        """Kafka, ClickHouse and (optionally) the S3 endpoint, with topics and migrations."""
        timeout = self.settings.stack.start_timeout_s
        with self._lock():
            if self.kafka.install():
                self.say(f"installed Kafka {self.settings.stack.kafka_version} jars")
            if self.clickhouse.install():
                self.say("installed clickhouse-server")
            started = self.kafka.start()
            if self.clickhouse.start():
                started.append("clickhouse")
            if self.settings.stack.start_s3 and self.s3.start():
                started.append("s3")
            if started:
                self.say("started " + ", ".join(started))
            self.kafka.wait_ready(timeout)
            self.clickhouse.wait_ready(timeout)
            if self.settings.stack.start_s3:
                self.s3.wait_ready(timeout)
            created = ensure_topics(self.settings.kafka, topic_specs(self.settings.topics))
            if created:
                self.say("created topics " + ", ".join(created))
            applied = apply_migrations(self.settings.clickhouse)
            if applied:
                self.say("applied migrations " + ", ".join(applied))

    def up_components(self) -> list[str]:
        started: list[str] = []
        with self._lock():
            env = self._component_env()
            for spec in COMPONENTS:
                if not spec.available():
                    continue
                proc = self._component_process(spec)
                if proc.is_running():
                    continue
                proc.start(spec.argv(), env=env)
                started.append(spec.name)
        for spec in COMPONENTS:
            if spec.name in started and not wait_for(
                lambda s=spec: _http_ok(s.health_url(self.settings)),
                self.settings.stack.start_timeout_s,
            ):
                proc = self._component_process(spec)
                raise PrerequisiteError(
                    f"{spec.name} did not report healthy at {spec.health_url(self.settings)}; "
                    f"log tail:\n{proc.log_tail()}"
                )
        return started

    def _component_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Components must reach the brokers `up` started, whatever layout was chosen.
        env.setdefault("AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS", self.kafka.bootstrap_servers())
        env.setdefault("AGENTWATCH_STACK__DIR", str(self.dir))
        return env

    # -- down ----------------------------------------------------------------------------
    def down(self) -> list[str]:
        stopped: list[str] = []
        with self._lock():
            for spec in reversed(COMPONENTS):
                if self._component_process(spec).stop(timeout_s=30):
                    stopped.append(spec.name)
            if self.s3.stop():
                stopped.append("s3")
            if self.clickhouse.stop():
                stopped.append("clickhouse")
            stopped.extend(self.kafka.stop())
        return stopped

    # -- status --------------------------------------------------------------------------
    def status(self, *, services_only: bool = False) -> StackReport:
        report = StackReport()
        kafka_procs = [self.kafka.process(n) for n in self.kafka.nodes()]
        kafka_ok = self.kafka.healthy()
        for node, proc in zip(self.kafka.nodes(), kafka_procs, strict=True):
            report.services.append(ServiceStatus(
                proc.name, kafka_ok, proc.is_running(), proc.pid(), f"127.0.0.1:{node.port}"))
        ch = self.settings.clickhouse
        report.services.append(ServiceStatus(
            "clickhouse", self.clickhouse.healthy(), self.clickhouse.process.is_running(),
            self.clickhouse.process.pid(), f"{ch.host}:{ch.port} (http {ch.http_port})"))
        if self.settings.stack.start_s3:
            report.services.append(ServiceStatus(
                "s3", self.s3.healthy(), self.s3.process.is_running(), self.s3.process.pid(),
                self.s3.endpoint))
        for spec in COMPONENTS:
            if services_only or not spec.available():
                continue
            proc = self._component_process(spec)
            url = spec.health_url(self.settings)
            report.services.append(ServiceStatus(
                spec.name, _http_ok(url), proc.is_running(), proc.pid(), url))
        return report


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(200 <= resp.status < 300)
    except OSError:
        return False
