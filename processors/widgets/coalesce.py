"""Coalescing of widget updates: at most one update per (session, widget) per interval.

A burst of events marks a key dirty many times but emits it once; the first change after a quiet
period goes out at once (leading edge), later ones wait until the interval since that key's last
emit has passed (trailing edge, flushed by a timer even when no further event arrives). So the
dashboard lags the state by at most the interval plus the timer's period. Pure and clock-injected:
the Faust shell drives it from its agent and its timer, tests drive it with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

Key = tuple[str, str]
"""(session_id, widget)."""


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

    def mark(self, session_id: str, widgets: Iterable[str]) -> None:
        now = self._clock()
        for widget in widgets:
            self._dirty.setdefault((session_id, widget), now)

    def due(self) -> list[Key]:
        """Dirty keys whose interval has passed; they count as emitted now (sorted for determinism)."""
        now = self._clock()
        out: list[Key] = []
        for key in self._dirty:
            last = self._last_emit.get(key)
            if last is None or now - last >= self.interval_s:
                out.append(key)
        for key in out:
            del self._dirty[key]
            self._last_emit[key] = now
        # Keys quiet for a whole interval behave like new ones: forget them so memory stays
        # bounded by the keys active within the last interval.
        if len(self._last_emit) > 2 * len(self._dirty) + 1024:
            self._last_emit = {
                k: t for k, t in self._last_emit.items()
                if now - t < self.interval_s or k in self._dirty
            }
        out.sort()
        return out

    def pending(self) -> int:
        return len(self._dirty)

    def oldest_dirty_age(self) -> float:
        """Seconds the longest-waiting dirty key has waited (0 when none)."""
        if not self._dirty:
            return 0.0
        return max(0.0, self._clock() - min(self._dirty.values()))

    def next_due_in(self) -> float | None:
        """Seconds until the next dirty key is due (0 if one is due now, None if nothing is dirty)."""
        if not self._dirty:
            return None
        now = self._clock()
        waits = []
        for key in self._dirty:
            last = self._last_emit.get(key)
            waits.append(0.0 if last is None else max(0.0, last + self.interval_s - now))
        return min(waits)

    def forget(self, session_ids: Iterable[str]) -> None:
        """Drop every key of these sessions (their partition moved to another worker)."""
        gone = set(session_ids)
        self._dirty = {k: t for k, t in self._dirty.items() if k[0] not in gone}
        self._last_emit = {k: t for k, t in self._last_emit.items() if k[0] not in gone}
