"""The aggregates' flush task sleeps until the next coalesced update is due (processors/aggregates.py)."""

from __future__ import annotations

import asyncio

import pytest

from processors.aggregates import FlushSchedule
from processors.widgets.coalesce import Coalescer


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


async def asleep(schedule: FlushSchedule, seconds: float) -> asyncio.Task[None]:
    task = asyncio.ensure_future(schedule.sleep(seconds))
    await asyncio.sleep(0)  # the task is now waiting
    return task


def test_sleeps_until_the_next_due_update_between_the_floor_and_the_tick() -> None:
    clock = Clock()
    s = FlushSchedule(0.002, 0.025, clock)
    assert s.delay(None) == 0.025  # nothing dirty: the tick, for the checkpoint check
    assert s.delay(0.2) == 0.025
    assert s.delay(0.01) == 0.01
    assert s.delay(0.0) == 0.0  # never ran: no floor to respect yet


async def test_the_floor_counts_from_the_start_of_the_last_run() -> None:
    clock = Clock()
    s = FlushSchedule(0.002, 0.025, clock)
    task = await asleep(s, 0.0)
    await task  # a run starts at 50.0
    assert s.delay(0.0) == pytest.approx(0.002)
    clock.t += 0.0015
    assert s.delay(0.0) == pytest.approx(0.0005)
    clock.t += 0.001
    assert s.delay(0.0) == 0.0


def test_a_tick_shorter_than_the_floor_wins() -> None:
    assert FlushSchedule(0.002, 0.001, Clock()).delay(0.0) == 0.0


async def test_an_update_due_now_ends_the_sleep_and_asks_the_agent_to_yield() -> None:
    clock = Clock()
    s = FlushSchedule(0.002, 0.025, clock)
    assert not s.expect(0.0)  # not sleeping: nothing to wake
    task = await asleep(s, 3600.0)
    assert not s.expect(None)
    assert s.expect(0.0)
    await asyncio.wait_for(task, 5)
    assert not s.expect(0.0)  # awake already


async def test_within_the_floor_the_sleep_is_shortened_to_the_floor_not_ended() -> None:
    clock = Clock()
    s = FlushSchedule(0.002, 0.025, clock)
    await (await asleep(s, 0.0))  # ran at 50.0
    task = await asleep(s, 3600.0)
    assert not s.expect(0.0)  # due now, but the last run began 0 s ago
    assert not task.done()
    assert s.wake_at == pytest.approx(50.002)
    await asyncio.wait_for(task, 5)  # the timer now fires after the floor


async def test_an_update_due_sooner_than_planned_moves_the_wake_up_and_later_ones_do_not() -> None:
    clock = Clock()
    s = FlushSchedule(0.002, 0.025, clock)
    task = await asleep(s, 3600.0)
    assert not s.expect(4000.0)
    assert s.wake_at == pytest.approx(50.0 + 3600.0)
    assert not s.expect(0.01)
    assert s.wake_at == pytest.approx(50.01)
    assert not s.expect(0.02)  # later than planned: unchanged
    assert s.wake_at == pytest.approx(50.01)
    await asyncio.wait_for(task, 5)
    assert s.wake_at == float("inf")


async def test_driven_by_a_coalescer_every_update_leaves_once_due_and_none_early() -> None:
    """The flush loop of the aggregates with a fake clock: a trailing-edge update goes out at
    the first run at or after its due time, and the sleeps are planned for exactly that."""
    clock = Clock()
    c = Coalescer(0.25, clock)
    s = FlushSchedule(0.002, 0.025, clock)
    c.mark("s", ["cost"])
    assert c.due() == [("s", "cost")]  # leading edge at 50.0
    clock.t = 50.1
    c.mark("s", ["cost"])  # trailing edge: due at 50.25
    planned = s.delay(c.next_due_in())
    assert planned == 0.025  # more than a tick away
    clock.t = 50.24
    assert s.delay(c.next_due_in()) == pytest.approx(0.01)
    task = await asleep(s, 3600.0)
    assert not s.expect(c.next_due_in())  # the sleep now ends at 50.25
    assert s.wake_at == pytest.approx(50.25)
    assert c.due() == []
    clock.t = 50.25
    assert s.expect(c.next_due_in())
    await asyncio.wait_for(task, 5)
    assert c.due() == [("s", "cost")]
