"""Coalescing of widget updates: at most one update per (session, widget) per interval.

A burst of events marks a key dirty many times but emits it once; the first change after a quiet
period goes out at once (leading edge), later ones wait until the interval since that key's last
emit has passed (trailing edge, flushed even when no further event arrives). Dirty keys sit in a
heap ordered by their last emit, so finding what is due, and when the next key will be, costs
O(log n) per key rather than a pass over every dirty key: the worker can afford to ask between
events and to sleep exactly until the next one is due. Pure and clock-injected: the aggregates
loop asks it between consume calls (the Faust runtime from a timer), tests drive it with a fake
clock.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable

Key = tuple[str, str]
"""(session_id, widget)."""

_NEVER = float("-inf")
"""Heap position of a key with no emit on record: due at once, whatever the clock says."""


class Coalescer:
    """Dirty-set with per-key rate limit; not thread-safe (one event loop owns it)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError("coalescing interval must be >= 0")
        self.interval_s = interval_s
        self._clock = clock
        self._dirty: dict[Key, float] = {}
        """Dirty key -> when it first became dirty since its last emit (for lag metrics)."""
        self._last_emit: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        """(last emit or -inf, key), one entry per dirty key: the smallest is the next due."""
        self._pruned_at = _NEVER

    def mark(self, session_id: str, widgets: Iterable[str]) -> None:
        now = self._clock()
        dirty = self._dirty
        for widget in widgets:
            key = (session_id, widget)
            if key not in dirty:
                dirty[key] = now
                heapq.heappush(self._heap, (self._last_emit.get(key, _NEVER), key))

    def due(self) -> list[Key]:
        """Dirty keys whose interval has passed; they count as emitted now (sorted for determinism)."""
        now = self._clock()
        heap, interval = self._heap, self.interval_s
        out: list[Key] = []
        # Keys leave in order of their last emit, so the first one not due ends the search.
        while heap and now - heap[0][0] >= interval:
            out.append(heapq.heappop(heap)[1])
        for key in out:
            del self._dirty[key]
            self._last_emit[key] = now
        self._prune(now)
        out.sort()
        return out

    def _prune(self, now: float) -> None:
        # Keys quiet for a whole interval behave like new ones (due at once either way): forget
        # them so memory stays bounded by the keys active within the last interval. At most once
        # an interval, so a steady set of busy keys is not copied on every call.
        if (len(self._last_emit) > 2 * len(self._dirty) + 1024
                and now - self._pruned_at >= self.interval_s):
            self._pruned_at = now
            self._last_emit = {
                k: t for k, t in self._last_emit.items()
                if now - t < self.interval_s or k in self._dirty
            }

    def pending(self) -> int:
        return len(self._dirty)

    def oldest_dirty_age(self) -> float:
        """Seconds the longest-waiting dirty key has waited (0 when none)."""
        if not self._dirty:
            return 0.0
        return max(0.0, self._clock() - min(self._dirty.values()))

    def next_due_in(self) -> float | None:
        """Seconds until the next dirty key is due (0 if one is due now, None if nothing is dirty)."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] + self.interval_s - self._clock())

    def forget(self, session_ids: Iterable[str]) -> None:
        """Drop every key of these sessions (their partition moved to another worker)."""
        gone = set(session_ids)
        self._dirty = {k: t for k, t in self._dirty.items() if k[0] not in gone}
        self._last_emit = {k: t for k, t in self._last_emit.items() if k[0] not in gone}
        self._heap = [entry for entry in self._heap if entry[1][0] not in gone]
        heapq.heapify(self._heap)
