"""The aggregates agent: one pass over the events topic feeds both the widgets and the patterns.

One Faust agent rather than one per side: Faust decodes and streams a message once per agent,
and that per-message path costs more than folding an event into both states. Events are folded
synchronously and held unacked; the flush task sends due widget updates and takes checkpoints
(processors/checkpoint.py): both sides' touched states to their changelogs, every output since
the last checkpoint confirmed, then the held events acked. Concurrency 1 (faust-streaming issue
606); the worker scales with partitions and more workers.

The flush task sleeps until the next coalesced update is due rather than ticking at a fixed
period (``FlushSchedule``), and the agent wakes it between two events when one has become due,
so an update leaves close to its due time even while the agent works through a backlog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry, Histogram

from pipeline.settings import Settings
from processors.checkpoint import Checkpointer, before_wait_empty
from processors.commit_guard import guard_commits
from processors.patterns.agent import build_pattern_shell
from processors.tables import owned_partitions
from processors.topics import WorkerTopics
from processors.widgets.agent import build_widget_shell

AGENT_NAME = "agentwatch.aggregates"
YIELD_EVERY = 128
"""Events folded between two yields to the loop, so the flush task keeps its pace under load."""
FLUSH_FLOOR_S = 0.002
"""Least time between two runs of the flush task: keys come due one by one, and a send for
each would cost a produce request per update."""


class FlushSchedule:
    """The flush task's sleep: until the next update is due, at least ``floor_s`` after the last
    run began and at most ``ceiling_s`` (the checkpoint check needs a pace of its own). The agent
    calls ``expect`` between events, since an event can make an update due sooner than the
    sleep was planned for; timestamps come from the event loop's clock (``clock`` in tests)."""

    def __init__(self, floor_s: float, ceiling_s: float,
                 clock: Callable[[], float] | None = None) -> None:
        self.floor_s = min(floor_s, ceiling_s)
        self.ceiling_s = ceiling_s
        self._clock = clock
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")
        self._ran_at = float("-inf")

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def wake_at(self) -> float:
        """When the current sleep ends (inf when not sleeping)."""
        return self._wake_at

    def delay(self, due_in: float | None) -> float:
        """How long to sleep when the next update is due in ``due_in`` s (None: nothing dirty)."""
        if due_in is None:
            return self.ceiling_s
        return min(self.ceiling_s, max(due_in, self._ran_at + self.floor_s - self.now()))

    async def sleep(self, seconds: float) -> None:
        """Until ``seconds`` have passed or ``expect`` ends the sleep sooner."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._timer = loop.call_later(seconds, _wake, waiter)
        self._wake_at = self.now() + seconds
        try:
            await waiter
        finally:
            self._timer.cancel()
            self._waiter = self._timer = None
            self._wake_at = float("inf")
            self._ran_at = self.now()

    def expect(self, due_in: float | None) -> bool:
        """An update is due in ``due_in`` s: end the sleep by then (not before the floor).
        True when it ended now, so the caller should yield to let the flush task run."""
        waiter = self._waiter
        if due_in is None or waiter is None or waiter.done():
            return False
        now = self.now()
        at = max(now + due_in, self._ran_at + self.floor_s)
        if at <= now:  # even if the timer is due too: a busy agent would not let it fire
            waiter.set_result(None)
            return True
        if at >= self._wake_at:
            return False
        assert self._timer is not None
        self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(at - now, _wake, waiter)
        self._wake_at = at
        return False


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def attach_aggregates_agent(app: Any, topics: WorkerTopics, settings: Settings,
                            registry: CollectorRegistry) -> Any:
    """Register both tables, the agent and its timers on ``app``; returns the agent."""
    conf = settings.widgets
    checkpoints = Checkpointer(conf.checkpoint_interval_ms / 1000.0, conf.checkpoint_max_events)
    lock = asyncio.Lock()
    widgets = build_widget_shell(app, settings, registry, checkpoints, lock)
    patterns = build_pattern_shell(app, settings, registry, checkpoints)
    seconds = Histogram(
        "agentwatch_aggregates_checkpoint_seconds",
        "Persist the touched states, confirm the outputs, ack the events.",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=registry)

    async def checkpoint() -> None:
        started = time.perf_counter()
        async with lock:
            held, outputs = checkpoints.take()
            owned = owned_partitions(app, settings.topics.events)
            widgets.processor.persist(owned)
            patterns.processor.persist(owned)
            writes = [*await widgets.store.write(), *await patterns.store.write()]
        await asyncio.gather(*writes, *outputs)
        for stream, event in held:
            await stream.ack(event)
        seconds.observe(time.perf_counter() - started)

    schedule = FlushSchedule(FLUSH_FLOOR_S, conf.flush_tick_ms / 1000.0)
    coalescer = widgets.processor.coalescer

    async def aggregates(stream: Any) -> None:
        guard_commits(app.consumer)
        before_wait_empty(app.consumer, checkpoint)
        manual = stream.noack()
        n = 0
        async for event in manual.events():
            widgets.fold(event)
            patterns.send_soon(patterns.fold(event))
            checkpoints.hold(manual, event)
            n += 1
            if checkpoints.held >= checkpoints.max_held:
                await widgets.send_due()
                await checkpoint()
            elif schedule.expect(coalescer.next_due_in()):
                await asyncio.sleep(0)  # the flush task, woken before this yield, runs first
            elif n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def tick() -> None:
        await widgets.send_due()
        if checkpoints.due():
            await checkpoint()

    async def flush() -> None:
        while not app.should_stop:
            await schedule.sleep(schedule.delay(coalescer.next_due_in()))
            if app.should_stop:
                break
            await tick()

    app.task(flush, traced=False)
    return app.agent(topics.events, name=AGENT_NAME, concurrency=1,
                     supervisor_strategy=CrashingSupervisor)(aggregates)
