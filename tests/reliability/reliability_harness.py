"""The processes of a private reliability pipeline, and how to poll them (used by conftest.py)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ws_recorder import WsRecorder

from pipeline.settings import REPO_ROOT, ClickHouseSettings

TOPIC_KINDS = ("ingest", "events", "widgets", "patterns", "dlq", "replay")
START_TIMEOUT_S = 90.0
GATEWAY_SECRET = "reliability-gateway-secret-" + "0123456789abcdef" * 3
"""HS256 secret of the private pipeline's gateway (64+ bytes: HS512 tokens are signed with it too)."""


def mint_token(user: str, role: str = "admin", ttl_s: int = 3600) -> str:
    """A bearer token the private pipeline's gateway accepts."""
    from consumers.gateway.auth import Authenticator, Role
    from pipeline.settings import GatewaySettings

    conf = GatewaySettings(jwt_secret=GATEWAY_SECRET)
    return Authenticator(conf, GATEWAY_SECRET).mint(user, Role(role), ttl_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               interval_s: float = 0.5) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` (never asserts on elapsed time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class Component:
    """One pipeline process: started, health-checked, killed, restarted, stopped."""

    name: str
    args: list[str]
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    exit_codes: list[int] = field(default_factory=list)
    """Exit status of every finished run (SIGKILL shows as -9)."""

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already runs"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", *self.args], cwd=REPO_ROOT, env=self.env,
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.exit_codes.append(self.proc.returncode)
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if self.health().get("healthy"):
                return
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not healthy after {timeout_s:.0f} s:\n{self.tail()}")

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric_sum(self, prefix: str) -> float:
        """Sum of the samples whose line starts with ``prefix`` (0 when unreachable)."""
        try:
            text = self.metrics()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(prefix))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.proc.wait(timeout=30))

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait; a process that ignores it is killed. None if it was not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        self.exit_codes.append(code)
        return code

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Pipeline:
    prefix: str
    topics: dict[str, str]
    database: str
    clickhouse: ClickHouseSettings
    kafka_bootstrap: str
    archive_dir: Path
    workdir: Path
    env: dict[str, str]
    components: dict[str, Component]
    sync_archive: Callable[[], None] | None = None
    """Brings ``archive_dir`` up to date when the archive lives elsewhere (an S3 bucket)."""
    recorder: WsRecorder | None = None
    """The dashboard client recording the gateway's WebSocket messages (leak scan input)."""

    def archive_root(self) -> Path:
        """The archive as a folder, freshly synced if it is a mirror."""
        if self.sync_archive is not None:
            self.sync_archive()
        return self.archive_dir

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.components['collector'].port}"

    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob("*.log"))

    def stop(self) -> dict[str, int | None]:
        # The recorder first (its reconnects would only add noise), then upstream first, so each
        # sink can drain what the stage before it wrote.
        if self.recorder is not None:
            self.recorder.stop()
        return {name: c.stop() for name, c in self.components.items()}


def delete_topics(bootstrap: str, prefixes: tuple[str, ...]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    doomed = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if doomed:
        for fut in admin.delete_topics(doomed, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()
