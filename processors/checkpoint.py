"""Checkpoints of a stateful agent: persist the touched states, confirm the outputs, then ack.

Writing a session's whole state to the changelog after every small batch costs more than the
work itself (states are KiBs, batches are often a few events per session), so the stateful
agents ack manually: events are *held* after they are folded in, and a checkpoint (every
``interval_s``, or when ``max_held`` events wait) serialises every touched state at once, awaits
those changelog writes and the outputs sent since the last checkpoint, and only then acks the
held events. A commit therefore never covers an event whose effects are not durable; a crash
replays at most one checkpoint interval, which the replay guard (processors.idempotence) skips.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Checkpointer:
    def __init__(self, interval_s: float, max_held: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.max_held = max_held
        self._clock = clock
        self._held: list[tuple[Any, Any]] = []
        self._outputs: list[Any] = []
        self._last = clock()

    def hold(self, stream: Any, event: Any) -> None:
        self._held.append((stream, event))

    def output(self, future: Any) -> None:
        self._outputs.append(future)

    @property
    def held(self) -> int:
        return len(self._held)

    def due(self) -> bool:
        if len(self._held) >= self.max_held:
            return True
        return bool(self._held or self._outputs) and (
            self._clock() - self._last >= self.interval_s)

    def take(self) -> tuple[list[tuple[Any, Any]], list[Any]]:
        """Events to ack and outputs to confirm; call in the same step as the state snapshot."""
        held, outputs = self._held, self._outputs
        self._held, self._outputs = [], []
        self._last = self._clock()
        return held, outputs


_HOOKS_ATTR = "_agentwatch_wait_empty_hooks"


def before_wait_empty(consumer: Any, hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` whenever Faust waits for every in-flight message to be acked (before a
    rebalance revokes partitions, and at shutdown), so held events are checkpointed then instead
    of making Faust wait for the next timer, which at shutdown never comes. Idempotent."""
    hooks: list[Callable[[], Awaitable[None]]] | None = getattr(consumer, _HOOKS_ATTR, None)
    if hooks is None:
        hooks = []
        inner: Callable[..., Awaitable[None]] = consumer.wait_empty

        @functools.wraps(inner)
        async def wait_empty(*args: Any, **kwargs: Any) -> None:
            for run in list(hooks):
                await run()
            await inner(*args, **kwargs)

        # Faust's rebalance and stop paths call ``self.wait_empty``: an instance attribute wins.
        consumer.wait_empty = wait_empty
        setattr(consumer, _HOOKS_ATTR, hooks)
    if hook not in hooks:
        hooks.append(hook)
