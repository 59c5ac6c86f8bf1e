"""The one retry helper: bounded attempts, exponential backoff with jitter, a deadline, Retry-After.

Two shapes of the same policy:

* ``retry_call(fn, policy, stop=...)`` / ``retry_async(...)`` for code that may block while it
  waits (startup checks, a producer flush). Waits end early when ``stop`` is set.
* ``Backoff`` for loops that must keep working while they wait (a Kafka consumer has to keep
  polling to stay in its group): it only says *how long* to wait and counts attempts.

What is retried is explicit: by default an exception whose class says ``retriable = True``
(``pipeline.errors.TransientError`` and subclasses); ``BackpressureError.retry_after`` is honoured.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pipeline.errors import AgentwatchError, BackpressureError

T = TypeVar("T")

RetryPredicate = Callable[[BaseException], bool]


def is_retriable(exc: BaseException) -> bool:
    """The default predicate: the error's class says it may succeed on retry."""
    return isinstance(exc, AgentwatchError) and exc.retriable


def retry_after_of(exc: BaseException) -> float | None:
    """The wait a dependency asked for (a sink's backpressure), if any."""
    return exc.retry_after if isinstance(exc, BackpressureError) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Delays grow ``initial_s * multiplier**(n-1)`` up to ``max_s``, each shortened by a random
    fraction up to ``jitter`` so that many clients recovering together do not retry in step.

    ``max_attempts`` counts calls, the first included (``None``: unbounded, for a sink that must
    outlive any outage); ``deadline_s`` bounds the whole retry from the first attempt.
    """

    initial_s: float = 0.2
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = 5
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s or self.multiplier < 1:
            raise ValueError("RetryPolicy needs 0 <= initial_s <= max_s and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter is a fraction in [0, 1]")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1 or None")

    def delay(self, failures: int, rand: float = 1.0, retry_after: float | None = None) -> float:
        """Wait after the ``failures``-th consecutive failure (1-based); ``rand`` in [0, 1)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, failures - 1))
        wait = base * (1.0 - self.jitter * rand)
        if retry_after is not None:
            # The dependency knows better than our schedule; never wait less than it asked.
            wait = max(wait, retry_after)
        return wait


class Backoff:
    """Consecutive-failure state of one retried operation, for loops that must not block.

    ``failure()`` returns the wait before the next attempt, or ``None`` when the policy's
    attempts or deadline are used up; ``success()`` resets.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rand = rand
        self.failures = 0
        self._first_failure: float | None = None

    def failure(self, retry_after: float | None = None) -> float | None:
        now = self._clock()
        if self._first_failure is None:
            self._first_failure = now
        self.failures += 1
        p = self.policy
        if p.max_attempts is not None and self.failures >= p.max_attempts:
            return None
        wait = p.delay(self.failures, self._rand(), retry_after)
        if p.deadline_s is not None:
            left = self._first_failure + p.deadline_s - now
            if left <= 0:
                return None
            wait = min(wait, left)
        return wait

    def success(self) -> None:
        self.failures = 0
        self._first_failure = None

    @property
    def failing_since(self) -> float | None:
        """Clock time of the first failure of the current streak."""
        return self._first_failure


def retry_call(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    retry_on: RetryPredicate = is_retriable,
    stop: threading.Event | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """Call ``fn`` until it succeeds; re-raises the last error when it is not retriable, when the
    attempts or deadline run out, or when ``stop`` is set (during a wait or before a call)."""
    backoff = Backoff(policy, clock=clock, rand=rand)
    while True:
        try:
            return fn()
        except Exception as exc:
            if not retry_on(exc):
                raise
            wait = backoff.failure(retry_after_of(exc))
            if wait is None or (stop is not None and stop.is_set()):
                raise
            if on_retry is not None:
                on_retry(exc, backoff.failures, wait)
            if stop is not None:
                if stop.wait(wait):
                    raise
            else:
                time.sleep(wait)


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_on: RetryPredicate = is_retriable,
    stop: asyncio.Event | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    rand: Callable[[], float] = random.random,
) -> T:
    """``retry_call`` for coroutines; the waits never block the event loop."""
    backoff = Backoff(policy, clock=time.monotonic, rand=rand)
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not retry_on(exc):
                raise
            wait = backoff.failure(retry_after_of(exc))
            if wait is None or (stop is not None and stop.is_set()):
                raise
            if on_retry is not None:
                on_retry(exc, backoff.failures, wait)
            if stop is None:
                await asyncio.sleep(wait)
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                continue
            raise
