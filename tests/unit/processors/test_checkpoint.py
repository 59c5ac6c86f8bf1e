from __future__ import annotations

import asyncio
from typing import Any

from processors.checkpoint import Checkpointer, before_wait_empty


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_due_after_the_interval_or_when_too_many_events_wait() -> None:
    clock = Clock()
    cp = Checkpointer(1.0, max_held=3, clock=clock)
    assert not cp.due()
    cp.hold("s", 1)
    assert not cp.due()
    clock.t = 1.0
    assert cp.due()
    held, outputs = cp.take()
    assert held == [("s", 1)] and outputs == []
    assert not cp.due()
    for i in range(3):
        cp.hold("s", i)
    assert cp.due()


def test_outputs_alone_make_a_checkpoint_due() -> None:
    clock = Clock()
    cp = Checkpointer(0.5, max_held=100, clock=clock)
    cp.output("future")
    clock.t = 0.5
    assert cp.due()
    assert cp.take() == ([], ["future"])


async def test_wait_empty_runs_hooks_first_once_each() -> None:
    calls: list[str] = []

    class Consumer:
        async def wait_empty(self) -> None:
            calls.append("wait")

    async def hook() -> None:
        calls.append("hook")

    consumer: Any = Consumer()
    before_wait_empty(consumer, hook)
    before_wait_empty(consumer, hook)
    await consumer.wait_empty()
    assert calls == ["hook", "wait"]
    await asyncio.sleep(0)
