"""Fixtures of the ClickHouse sink's integration tests: a private ClickHouse server (so an outage
can be staged without touching the shared one on 9000) and a runner for the sink process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import REPO_ROOT, ClickHouseSettings, StackSettings
from pipeline.stack.clickhouse import ClickHouseStack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
                interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(predicate, timeout_s, what)``: poll, fail with ``what`` on timeout."""
    return _wait_until


@pytest.fixture
def private_clickhouse(tmp_path: Path) -> Iterator[ClickHouseStack]:
    """A ClickHouse server of its own on free ports, in tmp_path; stopped at the end."""
    settings = ClickHouseSettings(port=free_port(), http_port=free_port(), database="agentwatch")
    stack = ClickHouseStack(StackSettings(dir=tmp_path / "stack"), settings)
    stack.start()
    try:
        stack.wait_ready(60)
        yield stack
    finally:
        stack.stop()


class SinkProcess:
    """`agentwatch sink clickhouse` as a child process with its own environment."""

    def __init__(self, env: Mapping[str, str], log_path: Path, http_port: int) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.http_port = http_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "sink", "clickhouse"],
                cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        _wait_until(self.healthy, 30, "the sink's /health")

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"sink exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health",
                                        timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def sink_process(tmp_path: Path) -> Iterator[Callable[..., SinkProcess]]:
    made: list[SinkProcess] = []

    def make(env: Mapping[str, Any]) -> SinkProcess:
        port = free_port()
        full = {k: str(v) for k, v in env.items()}
        full["AGENTWATCH_CLICKHOUSE_SINK_HTTP__PORT"] = str(port)
        full.setdefault("AGENTWATCH_LOG_FORMAT", "json")
        sink = SinkProcess(full, tmp_path / f"sink-{len(made)}.log", port)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        with contextlib.suppress(Exception):
            sink.close()
