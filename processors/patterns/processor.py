"""Pattern state per session over a changelogged store: detectors, triggers, and stall checks.

Table value (JSON) per session: ``d`` the detectors' state, ``part`` the events partition, and
the replay guard's ``pos``/``recent``. A small in-memory index of live sessions (not ended, fed
by events or rebuilt from the table after a recovery) is what the stall timer walks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from processors.idempotence import already_folded, remember
from processors.patterns.detectors import PatternConfig, check_stall, observe
from processors.patterns.triggers import notification_triggers
from processors.widgets.processor import StateStore

State = dict[str, Any]
Alert = dict[str, Any]

FORGET_LIVE_AFTER_US = 24 * 3600 * 1_000_000
"""A session silent this long leaves the stall index (it has long fired, or was never live)."""


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class PatternProcessor:
    def __init__(self, store: StateStore, cfg: PatternConfig, *, notifications: bool = True,
                 clock_us: Callable[[], int] = wall_clock_us) -> None:
        self.store = store
        self.cfg = cfg
        self.notifications = notifications
        self._clock_us = clock_us
        self._live: dict[str, int] = {}
        """session -> events partition, for sessions that may stall."""
        self._touched: dict[str, int] = {}
        self.skipped = 0

    def fold(self, partition: int, offset: int, event: dict[str, Any]) -> list[Alert]:
        sid = event["session_id"]
        st = self.store.get(sid)
        if st is None:
            st = {"d": {}, "part": partition}
            self.store.set(sid, st)
        elif already_folded(st, partition, offset, event["event_id"]):
            self.skipped += 1
            return []
        alerts = observe(st["d"], event, self.cfg, self._clock_us())
        if self.notifications:
            alerts.extend(notification_triggers(event))
        remember(st, partition, offset, event["event_id"])
        st["part"] = partition
        self._touched[sid] = partition
        if st["d"]["live"]["ended"]:
            self._live.pop(sid, None)
        else:
            self._live[sid] = partition
        return alerts

    def resume(self, states: Iterable[tuple[str, State]]) -> int:
        """After a recovery: sessions still live are watched for stalls again."""
        now = self._clock_us()
        for sid, st in states:
            live = st.get("d", {}).get("live")
            if live and not live["ended"] and now - live["last_progress"] < FORGET_LIVE_AFTER_US:
                self._live[sid] = st["part"]
        return len(self._live)

    def check_stalls(self, owned: set[int] | None = None) -> list[Alert]:
        now = self._clock_us()
        alerts: list[Alert] = []
        for sid, partition in list(self._live.items()):
            st = self.store.get(sid)
            if st is None or (owned is not None and partition not in owned):
                del self._live[sid]
                continue
            live = st["d"].get("live")
            if not live or live["ended"] or now - live["last_progress"] > FORGET_LIVE_AFTER_US:
                del self._live[sid]
                continue
            found = check_stall(sid, st["d"], self.cfg, now)
            if found:
                alerts.extend(found)
                self._touched[sid] = partition
        return alerts

    def live_sessions(self) -> int:
        return len(self._live)

    def persist(self, owned: set[int] | None = None) -> int:
        touched, self._touched = self._touched, {}
        for sid, partition in touched.items():
            if owned is None or partition in owned:
                self.store.persist(sid, partition)
        return len(touched)
