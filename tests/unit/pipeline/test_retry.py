"""pipeline.retry: backoff schedule, bounded attempts, deadline, Retry-After, interruption."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipeline.errors import BackpressureError, ConfigError, TransientError
from pipeline.retry import Backoff, RetryPolicy, is_retriable, retry_async, retry_call


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    p = RetryPolicy(initial_s=1, max_s=5, multiplier=2, jitter=0)
    assert [p.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_only_shortens_within_its_fraction() -> None:
    p = RetryPolicy(initial_s=10, max_s=10, jitter=0.5)
    assert p.delay(1, rand=0.0) == 10
    assert p.delay(1, rand=0.999) == pytest.approx(5.005)


def test_retry_after_is_a_floor() -> None:
    p = RetryPolicy(initial_s=1, max_s=2, jitter=0)
    assert p.delay(1, retry_after=7) == 7
    assert p.delay(1, retry_after=0.1) == 1


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(initial_s=2, max_s=1)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_backoff_counts_attempts_and_resets() -> None:
    b = Backoff(RetryPolicy(initial_s=1, max_s=10, jitter=0, max_attempts=3), rand=lambda: 0.0)
    assert b.failure() == 1
    assert b.failure() == 2
    assert b.failure() is None  # third call failed: attempts used up
    b.success()
    assert b.failures == 0 and b.failure() == 1


def test_backoff_deadline_cuts_the_last_wait() -> None:
    now = [0.0]
    b = Backoff(RetryPolicy(initial_s=4, max_s=4, jitter=0, max_attempts=None, deadline_s=10),
                clock=lambda: now[0], rand=lambda: 0.0)
    assert b.failure() == 4
    now[0] = 8.0
    assert b.failure() == 2
    now[0] = 10.0
    assert b.failure() is None


def test_retry_call_retries_retriable_errors_until_success() -> None:
    calls = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("down")
        return "ok"

    result = retry_call(flaky, RetryPolicy(initial_s=0, max_s=0, jitter=0),
                        on_retry=lambda _e, _n, w: waits.append(w))
    assert result == "ok" and len(calls) == 3 and waits == [0, 0]


def test_retry_call_does_not_retry_what_is_not_retriable() -> None:
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ConfigError("wrong")

    with pytest.raises(ConfigError):
        retry_call(bad, RetryPolicy(initial_s=0, max_s=0))
    assert len(calls) == 1
    assert not is_retriable(ValueError()) and is_retriable(BackpressureError("x", retry_after=1))


def test_retry_call_gives_up_after_max_attempts() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise TransientError("down")

    with pytest.raises(TransientError):
        retry_call(down, RetryPolicy(initial_s=0, max_s=0, max_attempts=4))
    assert len(calls) == 4


def test_a_set_stop_event_interrupts_the_wait() -> None:
    stop = threading.Event()
    calls = []

    def down() -> None:
        calls.append(1)
        stop.set()
        raise TransientError("down")

    with pytest.raises(TransientError):
        retry_call(down, RetryPolicy(initial_s=60, max_s=60, max_attempts=None), stop=stop)
    assert len(calls) == 1


async def test_retry_async_is_interrupted_by_its_stop_event() -> None:
    stop = asyncio.Event()
    calls = []

    async def down() -> None:
        calls.append(1)
        raise TransientError("down")

    async def stopper() -> None:
        await asyncio.sleep(0.05)
        stop.set()

    task = asyncio.create_task(stopper())
    with pytest.raises(TransientError):
        await retry_async(down, RetryPolicy(initial_s=60, max_s=60, max_attempts=None), stop=stop)
    await task
    assert len(calls) == 1


async def test_retry_async_succeeds_after_transient_errors() -> None:
    calls = []

    async def flaky() -> int:
        calls.append(1)
        if len(calls) < 2:
            raise TransientError("down")
        return 7

    assert await retry_async(flaky, RetryPolicy(initial_s=0, max_s=0)) == 7
