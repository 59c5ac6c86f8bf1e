from __future__ import annotations

import pytest

from processors.widgets.coalesce import Coalescer


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_first_change_goes_out_at_once_then_a_burst_coalesces() -> None:
    clock = Clock()
    c = Coalescer(0.25, clock)
    c.mark("s", ["cost"])
    assert c.due() == [("s", "cost")]
    emitted = 0
    for _ in range(1000):  # a burst within 0.2 s
        clock.t += 0.0002
        c.mark("s", ["cost", "session_summary"])
        emitted += len(c.due())
    # session_summary's first mark is a leading edge; cost waits out its interval.
    assert emitted == 1
    assert c.pending() == 2
    clock.t = 100.25
    assert c.due() == [("s", "cost")]
    clock.t = 100.2503
    assert c.due() == [("s", "session_summary")]
    assert c.pending() == 0


def test_timer_flushes_a_dirty_key_without_further_events() -> None:
    clock = Clock()
    c = Coalescer(0.25, clock)
    c.mark("s", ["error_log"])
    c.due()
    clock.t += 0.01
    c.mark("s", ["error_log"])
    assert c.due() == []
    assert c.next_due_in() == pytest.approx(0.24)
    clock.t += 0.1
    assert c.oldest_dirty_age() == pytest.approx(0.1)
    assert c.due() == []
    clock.t += 0.14
    assert c.due() == [("s", "error_log")]
    assert c.next_due_in() is None


def test_keys_are_independent_and_sorted() -> None:
    clock = Clock()
    c = Coalescer(1.0, clock)
    c.mark("b", ["cost"])
    c.mark("a", ["file_heatmap", "cost"])
    assert c.due() == [("a", "cost"), ("a", "file_heatmap"), ("b", "cost")]
    clock.t += 0.5
    c.mark("a", ["cost"])
    c.mark("c", ["cost"])
    assert c.due() == [("c", "cost")]


def test_zero_interval_emits_every_mark() -> None:
    c = Coalescer(0.0, Clock())
    for _ in range(3):
        c.mark("s", ["cost"])
        assert c.due() == [("s", "cost")]


def test_forget_drops_a_moved_session() -> None:
    clock = Clock()
    c = Coalescer(1.0, clock)
    c.mark("s", ["cost"])
    c.mark("t", ["cost"])
    c.forget(["s"])
    assert c.due() == [("t", "cost")]


def test_memory_stays_bounded_by_recently_active_keys() -> None:
    clock = Clock()
    c = Coalescer(0.25, clock)
    for i in range(5000):
        clock.t += 0.001
        c.mark(f"s{i}", ["cost"])
        c.due()
    assert len(c._last_emit) <= 2 * 1024 + 1 + 250


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        Coalescer(-1)
