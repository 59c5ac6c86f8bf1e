"""The replay engine: re-emit a recorded session with its original spacing divided by a speed.

Pure timing over an injectable clock, so tests drive it with a fake one. Every emitted event is
a copy marked ``metadata["replay"] = "1"`` and ``metadata["replay_id"]``: consumers of live data
never read the replay channel, and anything that does can tell a replay from the real thing.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

# The marks are shared with the worker's replay agent and the gateway (pipeline/replays.py);
# re-exported so existing imports from here keep working.
from pipeline.replays import REPLAY_FLAG, REPLAY_ID, is_replay

__all__ = ["REPLAY_FLAG", "REPLAY_ID", "Clock", "ReplayResult", "SystemClock", "is_replay",
           "mark_replay", "paced", "replay", "resolve_time", "schedule", "select"]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def mark_replay(event: Mapping[str, Any], replay_id: str) -> dict[str, Any]:
    """A copy of the event carrying the replay marks; everything else unchanged."""
    out = dict(event)
    out["metadata"] = {**(event.get("metadata") or {}), REPLAY_FLAG: "1", REPLAY_ID: replay_id}
    return out


def select(events: Iterable[Mapping[str, Any]], from_us: int | None = None,
           to_us: int | None = None) -> Iterator[Mapping[str, Any]]:
    """Events with ``from_us <= timestamp <= to_us``, in recording order (lazily)."""
    for event in events:
        ts = event["timestamp"]
        if (from_us is None or ts >= from_us) and (to_us is None or ts <= to_us):
            yield event


def _check_speed(speed: float) -> None:
    if speed < 0:
        raise ValueError("replay speed must be >= 0")


def paced(events: Iterable[Mapping[str, Any]], speed: float,
          max_gap_s: float | None = None) -> Iterator[tuple[Mapping[str, Any], float]]:
    """Each event with the seconds after the start at which it is due.

    Spacing is the timestamp difference divided by ``speed`` (0 = no waiting at all). Recording
    order is kept even when a producer's clock ran backwards: an event never goes before the one
    recorded ahead of it. ``max_gap_s`` caps one wait (skips long idle stretches).
    """
    _check_speed(speed)
    at = 0.0
    prev: int | None = None
    for event in events:
        ts = int(event["timestamp"])
        if prev is not None and speed > 0:
            gap = max(0.0, (ts - prev) / 1_000_000 / speed)
            if max_gap_s is not None:
                gap = min(gap, max_gap_s)
            at += gap
        prev = ts if prev is None else max(prev, ts)
        yield event, at


def schedule(events: Iterable[Mapping[str, Any]], speed: float,
             max_gap_s: float | None = None) -> list[float]:
    """The offsets ``paced`` gives, as a list."""
    return [offset for _event, offset in paced(events, speed, max_gap_s)]


Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ReplayResult:
    replay_id: str
    events: int
    duration_s: float
    first_emit_latency_s: float
    """From the start until the first event was emitted (0 if nothing was)."""


async def replay(
    events: Iterable[Mapping[str, Any]],
    emit: Emit,
    *,
    speed: float = 1.0,
    from_us: int | None = None,
    to_us: int | None = None,
    max_gap_s: float | None = None,
    replay_id: str | None = None,
    clock: Clock | None = None,
) -> ReplayResult:
    """Emit the selected events on schedule; cancel the task to stop a replay early.

    ``events`` may be a lazy iterable (``recordings.SessionStream``): the first event goes out
    as soon as it is read.
    """
    _check_speed(speed)
    clock = clock or SystemClock()
    rid = replay_id or str(uuid.uuid4())
    start = clock.monotonic()
    first_latency = 0.0
    count = 0
    for event, offset in paced(select(events, from_us, to_us), speed, max_gap_s):
        # Waits are measured from the start, not chained, so time spent emitting never
        # accumulates into drift.
        wait = start + offset - clock.monotonic()
        if wait > 0:
            await clock.sleep(wait)
        await emit(mark_replay(event, rid))
        if count == 0:
            first_latency = clock.monotonic() - start
        count += 1
    return ReplayResult(rid, count, clock.monotonic() - start, first_latency)


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def resolve_time(text: str, first_us: int) -> int:
    """A ``--from``/``--to`` value as epoch microseconds.

    ``+90s``, ``+5m``, ``+1h30m``: that long after the session's first event; an ISO 8601
    instant (``2026-01-01T10:00:00Z``; no zone means UTC); or plain integer microseconds.
    """
    value = text.strip()
    if value.startswith("+"):
        rest = value[1:]
        parts = _DURATION.findall(rest)
        if not parts or "".join(n + u for n, u in parts) != rest:
            raise ValueError(f"bad duration {text!r}; use e.g. +90s, +5m, +1h30m")
        return first_us + round(sum(float(n) * _UNITS[u] for n, u in parts) * 1_000_000)
    if value.isdigit():
        return int(value)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"bad time {text!r}; use +5m, an ISO 8601 instant or microseconds") from exc
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return round(instant.timestamp() * 1_000_000)
