"""Replay timing on a fake clock: spacing / speed, filters, marks."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from consumers.archive.replay import (
    is_replay,
    mark_replay,
    replay,
    resolve_time,
    schedule,
    select,
)
from consumers.archive.testing import FakeClock, sample_session
from pipeline import model

S = 1_000_000


def _events(*offsets_s: float) -> list[dict[str, Any]]:
    base = 1_767_225_600 * S
    return [model.new_event("notification", "s", {"message": str(i)}, timestamp_us=base + int(o * S))
            for i, o in enumerate(offsets_s)]


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.start = clock.now
        self.seen: list[tuple[float, dict[str, Any]]] = []

    async def __call__(self, event: dict[str, Any]) -> None:
        self.seen.append((self.clock.now - self.start, event))


@pytest.mark.parametrize(("speed", "expected"), [
    (1.0, [0.0, 1.0, 3.0, 3.5, 13.5]),
    (2.0, [0.0, 0.5, 1.5, 1.75, 6.75]),
    (0.5, [0.0, 2.0, 6.0, 7.0, 27.0]),
])
async def test_events_come_out_at_original_spacing_divided_by_speed(
    speed: float, expected: list[float]
) -> None:
    events = _events(0, 1, 3, 3.5, 13.5)
    clock = FakeClock()
    rec = Recorder(clock)
    result = await replay(events, rec, speed=speed, clock=clock, replay_id="r1")
    assert [t for t, _ in rec.seen] == pytest.approx(expected)
    assert result.events == 5 and result.duration_s == pytest.approx(expected[-1])
    assert result.replay_id == "r1"


async def test_speed_zero_never_waits() -> None:
    events = sample_session("s", 200)
    clock = FakeClock()
    rec = Recorder(clock)
    await replay(events, rec, speed=0, clock=clock)
    assert clock.sleeps == []
    assert [e["event_id"] for _, e in rec.seen] == [e["event_id"] for e in events]


async def test_slow_emits_do_not_accumulate_drift() -> None:
    events = _events(0, 1, 2, 3)
    clock = FakeClock()
    times: list[float] = []

    async def slow_emit(event: dict[str, Any]) -> None:
        times.append(clock.now - 1000.0)
        clock.advance(0.4)  # the channel takes 0.4 s per event

    await replay(events, slow_emit, speed=1.0, clock=clock)
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0])


async def test_behind_schedule_emits_immediately() -> None:
    events = _events(0, 0.1, 0.2)
    clock = FakeClock()

    async def very_slow(event: dict[str, Any]) -> None:
        clock.advance(1.0)

    await replay(events, very_slow, speed=1.0, clock=clock)
    assert clock.sleeps == []


def test_recording_order_is_kept_when_clocks_went_backwards() -> None:
    events = _events(0, 5, 4, 6, 10)
    assert schedule(events, 1.0) == pytest.approx([0.0, 5.0, 5.0, 6.0, 10.0])


def test_max_gap_caps_idle_stretches() -> None:
    events = _events(0, 1, 3601, 3602)
    assert schedule(events, 1.0, max_gap_s=2.0) == pytest.approx([0.0, 1.0, 3.0, 4.0])
    assert schedule(events, 2.0, max_gap_s=2.0) == pytest.approx([0.0, 0.5, 2.5, 3.0])


def test_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError):
        schedule(_events(0, 1), -1.0)


async def test_time_range_selects_events_inclusively_and_starts_at_the_first() -> None:
    events = _events(0, 10, 20, 30, 40)
    base = events[0]["timestamp"]
    chosen = select(events, base + 10 * S, base + 30 * S)
    assert [e["event_id"] for e in chosen] == [e["event_id"] for e in events[1:4]]
    clock = FakeClock()
    rec = Recorder(clock)
    await replay(events, rec, speed=10.0, from_us=base + 10 * S, to_us=base + 30 * S, clock=clock)
    assert [t for t, _ in rec.seen] == pytest.approx([0.0, 1.0, 2.0])


async def test_replayed_events_are_marked_copies() -> None:
    events = sample_session("s", 20)
    pristine = copy.deepcopy(events)
    clock = FakeClock()
    rec = Recorder(clock)
    await replay(events, rec, speed=0, clock=clock, replay_id="rid")
    assert events == pristine
    assert not any(is_replay(e) for e in events)
    for (_, out), original in zip(rec.seen, events, strict=True):
        assert is_replay(out)
        assert out["metadata"] == {**original["metadata"], "replay": "1", "replay_id": "rid"}
        assert {k: v for k, v in out.items() if k != "metadata"} == {
            k: v for k, v in original.items() if k != "metadata"}


def test_mark_replay_keeps_existing_metadata() -> None:
    event = model.new_event("notification", "s", {"message": "m"}, metadata={"host": "h"})
    assert mark_replay(event, "x")["metadata"] == {"host": "h", "replay": "1", "replay_id": "x"}


async def test_cancelling_stops_the_replay() -> None:
    events = _events(0, 1, 2, 1000)
    seen: list[dict[str, Any]] = []
    three = asyncio.Event()

    async def emit(event: dict[str, Any]) -> None:
        seen.append(event)
        if len(seen) == 3:
            three.set()

    # Real clock with a high speed: the first three go quickly, the last would wait ~1000/50 s.
    task = asyncio.create_task(replay(events, emit, speed=50.0))
    await three.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(seen) == 3


@pytest.mark.parametrize(("text", "expected"), [
    ("+90s", 1_000 * S + 90 * S),
    ("+5m", 1_000 * S + 300 * S),
    ("+1h30m", 1_000 * S + 5400 * S),
    ("+1.5s", 1_000 * S + 1_500_000),
    ("+250ms", 1_000 * S + 250_000),
    ("2026-01-01T00:00:10Z", 1_767_225_610 * S),
    ("2026-01-01T01:00:10+01:00", 1_767_225_610 * S),
    ("2026-01-01T00:00:10", 1_767_225_610 * S),
    ("1767225610000000", 1_767_225_610 * S),
])
def test_resolve_time_forms(text: str, expected: int) -> None:
    assert resolve_time(text, 1_000 * S) == expected


@pytest.mark.parametrize("text", ["+", "+5x", "+5m junk", "yesterday", "+m5"])
def test_resolve_time_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        resolve_time(text, 0)
