"""Replay views: widget states rebuilt from a replayed session, apart from every live state.

A replay (consumers/archive/replay.py) re-emits a recording on ``topics.replay``, each event
marked with its replay id. Each replay id gets a *view*: a session id of its own
(``pipeline.replays.view_session_id``) whose state is folded by the live path's own
``WidgetProcessor`` and reducers, so a view renders exactly what the live session rendered, and
whose updates are keyed by the view id, so subscribers of the live session never see them.

Views are ephemeral and in memory only: nothing is changelogged, since a replay can be started
again from the archive whenever wanted. They are bounded (``max_views``, least recently active
dropped first) and expire after ``idle_timeout_s`` without events; a dropped view is remembered
for a while so later events of that replay are ignored instead of rebuilding it from the middle.
Pure and clock-injected: the Faust shell (processors/replay_agent.py) drives it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.replays import replay_id_of, view_session_id
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import Outgoing, WidgetProcessor, widget_key, widget_partition

State = dict[str, Any]

FORGOTTEN_FACTOR = 4
"""Dropped views remembered (so their late events are ignored): this many times ``max_views``."""


class MemoryStore:
    """``processors.widgets.processor.StateStore`` over a dict: ``persist`` is a no-op, a view
    lives exactly as long as this process holds it."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}

    def get(self, key: str) -> State | None:
        return self.states.get(key)

    def set(self, key: str, value: State) -> None:
        self.states[key] = value

    def persist(self, key: str, partition: int) -> None:
        return None


@dataclass(frozen=True)
class Folded:
    """What ``ReplayViews.fold`` did with one record."""

    view: str | None
    """The view it went to (None when ignored)."""
    outcome: str
    """``folded``, ``duplicate`` (replay guard), ``not_replay`` (no replay marks) or
    ``forgotten`` (its view was dropped earlier)."""


@dataclass(frozen=True)
class Tombstone:
    """A widget of a dropped view: a null record for its key lets the compacted topic forget it."""

    key: bytes
    partition: int


class ReplayViews:
    def __init__(self, widget_partitions: int, coalesce_interval_s: float, idle_timeout_s: float,
                 max_views: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_views < 1:
            raise ValueError("max_views must be >= 1")
        self.store = MemoryStore()
        self.processor = WidgetProcessor(self.store, Coalescer(coalesce_interval_s, clock),
                                         widget_partitions)
        self.widget_partitions = widget_partitions
        self.idle_timeout_s = idle_timeout_s
        self.max_views = max_views
        self._clock = clock
        self._active: OrderedDict[str, float] = OrderedDict()
        """View -> when it last received an event; least recently active first."""
        self._sent: dict[str, set[str]] = {}
        """View -> widgets published under it (what a drop has to tombstone)."""
        self._dropped: list[str] = []
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self.dropped = 0
        """Views dropped so far (idle or evicted)."""

    def __len__(self) -> int:
        return len(self._active)

    def fold(self, partition: int, offset: int, event: dict[str, Any]) -> Folded:
        """Fold one replayed event (``partition``/``offset`` on the replay topic: replay guard)."""
        rid = replay_id_of(event)
        if rid is None:
            return Folded(None, "not_replay")
        view = view_session_id(rid)
        if view in self._forgotten:
            return Folded(view, "forgotten")
        if view not in self._active and len(self._active) >= self.max_views:
            oldest = next(iter(self._active))
            self._drop(oldest)
        self._active[view] = self._clock()
        self._active.move_to_end(view)
        folded = self.processor.fold(partition, offset, {**event, "session_id": view})
        return Folded(view, "folded" if folded else "duplicate")

    def flush(self) -> list[Outgoing]:
        """The updates due now, sequence numbers taken (1, 2, ... per view)."""
        out = self.processor.flush(None)
        # Nothing to persist; this only clears the processor's record of touched states.
        self.processor.persist(None)
        for update in out:
            self._sent.setdefault(update.value["session_id"], set()).add(update.value["widget"])
        return out

    def expire(self) -> list[Tombstone]:
        """Drop views idle for ``idle_timeout_s``; tombstones for everything dropped since the
        last call (evicted ones included). Call after ``flush`` so owed updates go out first."""
        now = self._clock()
        for view, last in list(self._active.items()):
            if now - last < self.idle_timeout_s:
                break  # ordered by activity: the rest are fresher
            self._drop(view)
        dropped, self._dropped = self._dropped, []
        partition = self.widget_partitions
        return [Tombstone(widget_key(view, widget), widget_partition(view, partition))
                for view in dropped for widget in sorted(self._sent.pop(view, ()))]

    def _drop(self, view: str) -> None:
        self._active.pop(view, None)
        self.store.states.pop(view, None)
        self.processor.coalescer.forget([view])
        self._dropped.append(view)
        self.dropped += 1
        self._forgotten[view] = None
        while len(self._forgotten) > FORGOTTEN_FACTOR * self.max_views:
            self._forgotten.popitem(last=False)
