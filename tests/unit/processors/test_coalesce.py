from __future__ import annotations

import random

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


class _Reference:
    """The coalescer before its heap: a pass over every dirty key per call."""

    def __init__(self, interval_s: float, clock: Clock) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.dirty: dict[tuple[str, str], float] = {}
        self.last_emit: dict[tuple[str, str], float] = {}

    def mark(self, session_id: str, widgets: list[str]) -> None:
        for widget in widgets:
            self.dirty.setdefault((session_id, widget), self.clock())

    def due(self) -> list[tuple[str, str]]:
        now = self.clock()
        out = [k for k in self.dirty
               if k not in self.last_emit or now - self.last_emit[k] >= self.interval_s]
        for key in out:
            del self.dirty[key]
            self.last_emit[key] = now
        return sorted(out)

    def next_due_in(self) -> float | None:
        if not self.dirty:
            return None
        now = self.clock()
        return min(0.0 if k not in self.last_emit else max(0.0, self.last_emit[k] + self.interval_s - now)
                   for k in self.dirty)

    def forget(self, session_ids: list[str]) -> None:
        self.dirty = {k: t for k, t in self.dirty.items() if k[0] not in session_ids}
        self.last_emit = {k: t for k, t in self.last_emit.items() if k[0] not in session_ids}


@pytest.mark.parametrize("seed", range(4))
def test_heap_schedule_matches_a_pass_over_every_dirty_key(seed: int) -> None:
    """Random marks, flushes at random times, moved sessions, and enough keys (3,000 sessions)
    that quiet ones are pruned: the same keys come due at the same moments."""
    rng = random.Random(seed)
    clock = Clock()
    interval = rng.choice([0.0, 0.05, 0.25])
    c, ref = Coalescer(interval, clock), _Reference(interval, clock)
    widgets = ["cost", "error_log", "session_summary"]
    emitted = 0
    for _ in range(20_000):
        clock.t += rng.choice([0.0, 0.0001, 0.003, 0.02, 0.1])
        r = rng.random()
        if r < 0.6:
            sid = f"s{rng.randrange(3000) if rng.random() < 0.3 else rng.randrange(20)}"
            ws = rng.sample(widgets, rng.randint(1, 3))
            c.mark(sid, ws)
            ref.mark(sid, ws)
        elif r < 0.995:
            assert c.next_due_in() == ref.next_due_in()
            got = c.due()
            assert got == ref.due()
            emitted += len(got)
        else:
            gone = [f"s{rng.randrange(20)}"]
            c.forget(gone)
            ref.forget(gone)
        assert c.pending() == len(ref.dirty)
    assert emitted > 1000
    assert len(c._last_emit) < 3000 * 3  # quiet keys were forgotten


def test_next_due_in_follows_the_earliest_key_as_keys_leave() -> None:
    clock = Clock()
    c = Coalescer(0.25, clock)
    c.mark("a", ["cost"])
    clock.t += 0.1
    c.mark("b", ["cost"])
    assert c.due() == [("a", "cost"), ("b", "cost")]  # both leading edges, a emitted at 100.1
    c.mark("a", ["cost"])
    c.mark("b", ["cost"])
    clock.t += 0.05
    c.mark("c", ["cost"])  # never emitted: due at once
    assert c.next_due_in() == 0.0
    assert c.due() == [("c", "cost")]
    assert c.next_due_in() == pytest.approx(0.2)  # a and b: 0.25 after 100.1
    clock.t = 100.35
    assert c.next_due_in() == 0.0
    assert c.due() == [("a", "cost"), ("b", "cost")]
    assert c.next_due_in() is None


def test_forget_removes_the_moved_sessions_from_the_schedule() -> None:
    clock = Clock()
    c = Coalescer(0.25, clock)
    c.mark("s", ["cost"])
    c.mark("t", ["cost"])
    c.due()
    clock.t += 0.1
    c.mark("s", ["cost"])
    clock.t += 0.1
    c.mark("t", ["cost"])
    c.forget(["s"])
    assert c.next_due_in() == pytest.approx(0.05)
    assert c.due() == []
    clock.t = 100.25
    assert c.due() == [("t", "cost")]
    c.mark("s", ["cost"])  # back after the move: a new key, due at once
    assert c.due() == [("s", "cost")]
