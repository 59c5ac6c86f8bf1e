"""Doubles, sample data and a process harness for the archive's tests and benchmarks.

``MemoryTarget`` is an in-memory ``ArchiveTarget`` that can be told to fail; ``FakeClock``
drives the replay engine without waiting; ``sample_session`` builds a realistic session;
``SinkProcess`` and ``EventsTopic`` run the real sink as a child process against real Kafka.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from consumers.archive.targets import ObjectWriter
from pipeline import model
from pipeline.errors import TransientError
from pipeline.serde import AvroSerde


class MemoryTarget:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_puts = False
        self.puts = 0

    def describe(self) -> str:
        return "memory://"

    def put(self, key: str, data: bytes) -> None:
        if self.fail_puts:
            raise TransientError(f"memory target is down (put {key})")
        self.puts += 1
        self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, keys: Iterable[str]) -> None:
        for key in list(keys):
            self.objects.pop(key, None)

    def open_writer(self, key: str) -> ObjectWriter:
        return _MemoryWriter(self, key)


class _MemoryWriter:
    def __init__(self, target: MemoryTarget, key: str) -> None:
        self._target = target
        self._key = key
        self._buf = io.BytesIO()
        self._done = False

    def write(self, data: bytes, /) -> int:
        return self._buf.write(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._target.put(self._key, self._buf.getvalue())

    def abort(self) -> None:
        self._done = True


class FakeClock:
    """Time moves only when the engine sleeps (or a test calls ``advance``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


_CYCLE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("user.prompt", {"prompt_length": 120, "prompt_excerpt": "fix the failing test"}),
    ("llm.request", {"model": "claude-sonnet-4-5", "input_tokens": 12_000, "output_tokens": 700,
                     "cost_usd": 0.041, "duration_ms": 5400}),
    ("file.read", {"path": "src/app.py", "size_bytes": 2048}),
    ("file.write", {"path": "src/app.py", "lines_added": 12, "lines_removed": 3}),
    ("command.executed", {"binary": "pytest", "args": ["-q"], "exit_code": 1,
                          "duration_ms": 5300, "stdout_excerpt": "1 failed, 41 passed"}),
    ("test.executed", {"suite": "unit", "test_name": "test_app", "outcome": "failed"}),
    ("resource.sample", {"memory_mib": 512.5, "cpu_pct": 73.25}),
    ("agent.task.progress", {"agent_name": "main", "progress_pct": 40.0, "current_step": "edit"}),
)


def sample_session(
    session_id: str,
    events: int,
    *,
    start_us: int = 1_767_225_600_000_000,
    span_s: float = 2 * 3600.0,
    ended: bool = True,
) -> list[dict[str, Any]]:
    """``events`` events spread over ``span_s`` seconds: session.started, a mix of tool calls,
    then session.ended (when ``ended``). Timestamps strictly increase."""
    if events < 2:
        raise ValueError("a sample session has at least a start and an end")
    step = int(span_s * 1_000_000 / (events - 1))
    out = [model.new_event("session.started", session_id, {"reason": "startup", "cwd": "/repo"},
                           source="hook", timestamp_us=start_us)]
    for i in range(1, events - 1):
        event_type, payload = _CYCLE[i % len(_CYCLE)]
        out.append(model.new_event(event_type, session_id, dict(payload), source="hook",
                                   timestamp_us=start_us + i * step,
                                   metadata={"seq": str(i)}))
    last_type = "session.ended" if ended else "notification"
    last_payload: dict[str, Any] = (
        {"reason": "exit", "duration_ms": int(span_s * 1000)} if ended else {"message": "idle"}
    )
    out.append(model.new_event(last_type, session_id, last_payload, source="hook",
                               timestamp_us=start_us + (events - 1) * step))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class SinkProcess:
    """`agentwatch sink archive` as a child process, configured only through the environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["AGENTWATCH_ARCHIVE_SINK_HTTP__PORT"])
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "sink", "archive"],
            env={**os.environ, **env}, stdout=self._log, stderr=self._log)
        wait_for("the archive sink's /health", self.healthy)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"archive sink exited with {self.proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, "archive sink did not stop cleanly on SIGTERM"
        self._log.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()


class EventsTopic:
    """Produces events to a topic and reads the committed offsets of a consumer group."""

    def __init__(self, bootstrap: str, name: str, group: str, partitions: int) -> None:
        from confluent_kafka import Consumer, Producer

        self.name = name
        self.partitions = partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self.watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                 "enable.auto.commit": False})
        self.produced = 0
        self._serde = AvroSerde()

    def produce(self, events: Sequence[dict[str, Any]], pause_s: float = 0.0) -> None:
        for event in events:
            self.producer.produce(self.name, key=event["session_id"].encode(),
                                  value=self._serde.encode_event(event))
            self.produced += 1
            if pause_s:
                self.producer.poll(0)
                time.sleep(pause_s)
        assert self.producer.flush(30) == 0

    def committed(self) -> int:
        """Messages the sink's group has committed, over all partitions."""
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(self.name, p) for p in range(self.partitions)]
        return sum(max(tp.offset, 0) for tp in self.watcher.committed(tps, timeout=10))

    def close(self) -> None:
        self.watcher.close()
