"""Doubles and sample data for the archive's tests and benchmarks (no test framework needed).

``MemoryTarget`` is an in-memory ``ArchiveTarget`` that can be told to fail; ``FakeClock``
drives the replay engine without waiting; ``sample_session`` builds a realistic session.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from consumers.archive.targets import ObjectWriter
from pipeline import model
from pipeline.errors import TransientError


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
