"""The private whole pipeline of bench/whole_pipeline.py: six components on private names, and probes.

Every component runs as `python -m pipeline.cli <command>` (what `agentwatch up` starts) on the
local stack's Kafka, ClickHouse and S3 endpoints, with private topics, consumer groups, app id,
ports, ClickHouse database and folders; every other setting stays at its default.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipeline.settings import REPO_ROOT, ClickHouseSettings

TOPIC_KINDS = ("ingest", "events", "widgets", "patterns", "dlq", "replay")
SECRET = "bench-pipeline-secret-" + "0123456789abcdef" * 3
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Component:
    name: str
    args: list[str]
    port: int
    env: dict[str, str]
    log: Path
    ready: str = "healthy"
    """A /health key that must be truthy before the component counts as started."""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *self.args],
                                         cwd=REPO_ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            health = self.health()
            if health.get("healthy") and health.get(self.ready):
                return
            time.sleep(0.3)
        raise SystemExit(f"{self.name} not ready in {timeout_s:.0f} s:\n{self.tail()}")

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                body = json.loads(r.read())
        except (OSError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    def metric(self, *prefixes: str) -> dict[str, float]:
        """Sum of the samples of each metric name (over labels); missing ones are 0."""
        out = dict.fromkeys(prefixes, 0.0)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return out
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in out:
                out[name] += float(line.rsplit(" ", 1)[1])
        return out

    def processes(self) -> list[psutil.Process]:
        """The component and its children (the collector's OTLP workers, a worker pool)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            main = psutil.Process(self.proc.pid)
            return [main, *main.children(recursive=True)]
        except psutil.Error:
            return []

    def rss_mib(self) -> tuple[float, int]:
        """(resident MiB summed over the process tree, processes); forked children's shared
        pages count once per process, as ``ps`` shows them."""
        total, n = 0, 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
                n += 1
        return total / MIB, n

    def pss_mib(self) -> float:
        """Proportional set size over the tree: shared pages split between their sharers."""
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error, AttributeError):
                total += proc.memory_full_info().pss
        return total / MIB

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def problems(self) -> dict[str, int]:
        """Log lines at warning level or above (and tracebacks), counted by logger and message
        with the numbers taken out."""
        if not self.log.exists():
            return {}
        kinds: dict[str, int] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            start = line.find("{")
            try:
                rec = json.loads(line[start:]) if start >= 0 else None
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                level = str(rec.get("level", "")).lower()
                if level not in ("warning", "error", "critical"):
                    continue
                msg = re.sub(r"\d+(\.\d+)?", "N", str(rec.get("msg", "")))[:90]
                key = f"{level} {rec.get('logger')}: {msg}"
            elif line.startswith("Traceback"):
                key = "Traceback"
            else:
                continue
            kinds[key] = kinds.get(key, 0) + 1
        return dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:6])


@dataclass
class PrivatePipeline:
    bootstrap: str
    clickhouse: ClickHouseSettings
    workdir: Path
    prefix: str = field(default_factory=lambda: f"benchpipe{uuid.uuid4().hex[:8]}")
    parts: dict[str, Component] = field(default_factory=dict)
    migrated: bool = False

    @property
    def database(self) -> str:
        return self.prefix

    def env(self) -> dict[str, str]:
        # Nothing of the outer environment may point a component at shared names or ports.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        ch = self.clickhouse
        env.update({
            "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            **{f"AGENTWATCH_TOPICS__{k.upper()}": f"{self.prefix}.{k}" for k in TOPIC_KINDS},
            "AGENTWATCH_CLICKHOUSE__HOST": ch.host,
            "AGENTWATCH_CLICKHOUSE__PORT": str(ch.port),
            "AGENTWATCH_CLICKHOUSE__HTTP_PORT": str(ch.http_port),
            "AGENTWATCH_CLICKHOUSE__USER": ch.user,
            "AGENTWATCH_CLICKHOUSE__PASSWORD": ch.password.get_secret_value(),
            "AGENTWATCH_CLICKHOUSE__DATABASE": self.database,
            "AGENTWATCH_CLICKHOUSE_SINK__GROUP_ID": f"{self.prefix}-clickhouse",
            "AGENTWATCH_WORKER__APP_ID": f"{self.prefix}-worker",
            "AGENTWATCH_ARCHIVE__TARGET": (self.workdir / "archive").as_uri(),
            "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": f"{self.prefix}-archive",
            "AGENTWATCH_ALERTS__CONSUMER_GROUP": f"{self.prefix}-alerts",
            "AGENTWATCH_STACK__DIR": str(self.workdir / "stack"),
            "AGENTWATCH_SPOOL__DIR": str(self.workdir / "spool"),
            "AGENTWATCH_COLLECTOR__INBOX_DIR": str(self.workdir / "inbox"),
            "AGENTWATCH_COLLECTOR__HOOK_LOG": str(self.workdir / "hook.log"),
            "AGENTWATCH_GATEWAY__JWT_SECRET": SECRET,
        })
        for name, part in self.parts.items():
            env[PORT_VARS[name]] = str(part.port)
        return env

    def settings(self) -> Any:
        """The private names as a Settings object (for pipeline.stack.lag)."""
        from pipeline.settings import Settings

        return Settings(kafka={"bootstrap_servers": self.bootstrap},
                        topics={k: f"{self.prefix}.{k}" for k in TOPIC_KINDS},
                        worker={"app_id": f"{self.prefix}-worker"},
                        clickhouse_sink={"group_id": f"{self.prefix}-clickhouse"},
                        archive={"consumer_group": f"{self.prefix}-archive"},
                        alerts={"consumer_group": f"{self.prefix}-alerts"})

    def start(self) -> None:
        from pipeline.migrations import apply_migrations
        from pipeline.topics import ensure_topics, topic_specs

        settings = self.settings()
        ensure_topics(settings.kafka, topic_specs(settings.topics))
        self.migrated = True  # from here on the database may exist: drop it at the end
        apply_migrations(self.clickhouse, self.database)
        for name, args, ready in SPECS:
            self.parts[name] = Component(name, args, free_port(), {}, self.workdir / f"{name}.log",
                                         ready)
        env = self.env()
        # Upstream last: every consumer is in place before the first event arrives.
        for part in self.parts.values():
            part.env = env
            part.start()

    def ch_rows(self, conn: Any) -> int:
        return int(conn.execute(f"SELECT count() FROM {self.database}.telemetry_events")[0][0])

    def lag(self) -> dict[str, int | None]:
        from pipeline.stack.lag import consumer_groups, measure_lag

        return {f"{g.component}:{g.topic.rsplit('.', 1)[1]}": g.lag
                for g in measure_lag(self.settings().kafka, consumer_groups(self.settings()))}

    def stop(self) -> dict[str, int | None]:
        # The collector first: its spool is what would otherwise keep feeding the rest.
        return {name: self.parts[name].stop() for name in reversed(list(self.parts))}

    def cleanup(self, keep_dir: bool = False) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        # The worker names its own internal topics after its app id (same prefix).
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result()
        delete_groups(admin, self.prefix)
        if self.migrated:
            drop_database(self.clickhouse, self.database)
        if not keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def delete_groups(admin: Any, prefix: str) -> list[str]:
    """The private consumer groups (stopped members only: run after the components stop)."""
    with contextlib.suppress(Exception):
        listing = admin.list_consumer_groups(request_timeout=10).result()
        mine = [g.group_id for g in listing.valid if g.group_id.startswith(prefix)]
        if mine:
            for fut in admin.delete_consumer_groups(mine, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result()
        return mine
    return []


def drop_database(ch: ClickHouseSettings, name: str, attempts: int = 3) -> None:
    """Again on a fresh connection if it times out: a drop of many parts can outlast the
    client's receive timeout on a loaded machine (the drop itself completes on the server)."""
    from clickhouse_driver.errors import SocketTimeoutError

    from pipeline.migrations import client

    for attempt in range(attempts):
        conn = client(ch)
        try:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            return
        except SocketTimeoutError:
            if attempt == attempts - 1:
                raise
        finally:
            conn.disconnect()


SPECS: tuple[tuple[str, list[str], str], ...] = (
    ("worker", ["worker"], "assigned_partitions"),
    ("clickhouse-sink", ["sink", "clickhouse"], "healthy"),
    ("archive-sink", ["sink", "archive"], "healthy"),
    ("alerts", ["alerts"], "healthy"),
    ("gateway", ["gateway"], "caught_up"),
    ("collector", ["collector"], "healthy"),
)
PORT_VARS = {
    "worker": "AGENTWATCH_WORKER_HTTP__PORT",
    "clickhouse-sink": "AGENTWATCH_CLICKHOUSE_SINK_HTTP__PORT",
    "archive-sink": "AGENTWATCH_ARCHIVE_SINK_HTTP__PORT",
    "alerts": "AGENTWATCH_ALERTS_HTTP__PORT",
    "gateway": "AGENTWATCH_GATEWAY__PORT",
    "collector": "AGENTWATCH_COLLECTOR__PORT",
}
