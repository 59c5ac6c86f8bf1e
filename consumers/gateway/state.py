"""The gateway's materialised view of agent.telemetry.widgets: latest state per (session, widget).

The widgets topic is compacted per ``session/widget`` key, so reading it from the beginning
rebuilds exactly the latest state of every widget: that is the snapshot a new WebSocket client
gets. Each WidgetUpdate carries the whole widget, so no update depends on an earlier one.

``version`` is the worker's per-session sequence number, +1 for every update of any widget of
the session (all widgets of a session share one partition, so the gateway sees them in order).
An update not newer than what a widget holds is a duplicate and ignored. Once a partition is
caught up, a jump of more than one is a gap (a worker restart skips numbers on purpose): the
session's subscribers are re-synced with a fresh snapshot. Pattern alerts (not compacted, read
from a look-back) are kept as the synthetic ``pattern_alerts`` widget.

Owner: ``session_summary``'s ``user_id`` (the first event's metadata user_id). Sessions without
one are visible to admins only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PATTERN_WIDGET = "pattern_alerts"
WIDGETS: tuple[str, ...] = (
    "session_progress", "agent_timeline", "file_heatmap", "error_log", "resource_usage",
    "network_trace", "cost", "session_summary", PATTERN_WIDGET,
)
"""Widgets a client may subscribe to: the worker's (processors/widgets/reducers.py) + alerts."""


@dataclass
class WidgetState:
    widget: str
    data_json: str
    data: dict[str, Any]
    seq: int
    timestamp: int


@dataclass
class SessionState:
    session_id: str
    widgets: dict[str, WidgetState] = field(default_factory=dict)
    last_seq: int = 0
    agent: str | None = None
    owner: str | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alert_ids: set[str] = field(default_factory=set)
    alerts_seq: int = 0

    def overview(self) -> dict[str, Any]:
        """The sessions-list row: status, progress, active agents, errors, cost."""
        summary = self._data("session_summary")
        progress = self._data("session_progress")
        timeline = self._data("agent_timeline")
        cost = self._data("cost")
        errors = self._data("error_log")
        counts = summary.get("counts") or {}
        agents = timeline.get("agents") or []
        last_event = summary.get("last_event") or {}
        return {
            "session_id": self.session_id,
            "user_id": self.owner,
            "agent": self.agent,
            "status": summary.get("status", "in_progress"),
            "completion_pct": progress.get("completion_pct"),
            "current_phase": progress.get("current_phase"),
            "active_agents": sum(1 for a in agents if a.get("status") == "active"),
            "agents": len(agents) or len(summary.get("agents") or []),
            "errors": counts.get("errors", 0),
            "open_errors": errors.get("open", 0),
            "cost_usd": cost.get("total_usd", 0.0),
            "events": summary.get("events", 0),
            "started_at": summary.get("started_at"),
            "last_event_at": last_event.get("timestamp"),
            "alerts": len(self.alerts),
            "seq": self.last_seq,
        }

    def _data(self, widget: str) -> dict[str, Any]:
        state = self.widgets.get(widget)
        return state.data if state is not None else {}


@dataclass(frozen=True)
class Change:
    """One accepted widget update, as the hub fans it out."""

    session: SessionState
    widget: WidgetState
    gap: bool
    """The session's sequence jumped: subscribers should re-sync."""
    overview_changed: bool


Listener = Callable[[Change], None]


class WidgetStore:
    """Not thread-safe: the event loop that runs the Kafka feed owns it."""

    def __init__(self, alerts_per_session: int = 50) -> None:
        self.sessions: dict[str, SessionState] = {}
        self.alerts_per_session = alerts_per_session
        self.listeners: list[Listener] = []
        self.live_partitions: set[int] = set()
        """Partitions read up to the end offset seen at start: gaps there are real gaps."""
        self.gaps = 0
        self.duplicates = 0

    def get(self, session_id: str) -> SessionState | None:
        return self.sessions.get(session_id)

    def apply_update(self, record: dict[str, Any], partition: int = 0) -> Change | None:
        """Fold one WidgetUpdate record; returns the change, or None for a stale duplicate."""
        sid = str(record["session_id"])
        name = str(record["widget"])
        seq = int(record.get("version") or 0)
        session = self.sessions.get(sid)
        if session is None:
            session = self.sessions[sid] = SessionState(sid)
        current = session.widgets.get(name)
        if current is not None and seq <= current.seq:
            self.duplicates += 1
            return None
        data_json = str(record.get("data_json") or "{}")
        try:
            data = json.loads(data_json)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # data_json is spliced into every message as is: never pass on text that is not
            # a JSON object.
            data, data_json = {}, "{}"
        gap = (partition in self.live_partitions and session.last_seq > 0
               and seq > session.last_seq + 1)
        if gap:
            self.gaps += 1
        widget = WidgetState(name, data_json, data, seq, int(record.get("timestamp") or 0))
        session.widgets[name] = widget
        session.last_seq = max(session.last_seq, seq)
        if record.get("agent"):
            session.agent = str(record["agent"])
        if name == "session_summary" and data.get("user_id") and session.owner is None:
            # The first owner wins, as in the reducer: a later event cannot take a session over.
            session.owner = str(data["user_id"])
        change = Change(session, widget, gap, overview_changed=name in _OVERVIEW_WIDGETS)
        self._emit(change)
        return change

    def apply_alert(self, alert: dict[str, Any]) -> Change | None:
        """Fold one PatternAlert into the session's pattern_alerts widget (deduplicated by id)."""
        sid = str(alert["session_id"])
        session = self.sessions.get(sid)
        if session is None:
            session = self.sessions[sid] = SessionState(sid)
        alert_id = str(alert.get("alert_id"))
        if alert_id in session.alert_ids:
            self.duplicates += 1
            return None
        session.alert_ids.add(alert_id)
        entry = {
            "alert_id": alert_id, "pattern": alert.get("pattern"), "agent": alert.get("agent"),
            "severity": alert.get("severity"), "message": alert.get("message"),
            "suggested_mitigation": alert.get("suggested_mitigation"),
            "window_start": alert.get("window_start"), "window_end": alert.get("window_end"),
            "detected_at": alert.get("detected_at"),
            "evidence_event_ids": list(alert.get("evidence_event_ids") or []),
        }
        session.alerts = [entry, *session.alerts][: self.alerts_per_session]
        session.alert_ids = {a["alert_id"] for a in session.alerts} | {alert_id}
        # Alerts have no worker sequence: their own counter, as negative-free ordering per widget.
        session.alerts_seq += 1
        data = {"alerts": session.alerts}
        widget = WidgetState(PATTERN_WIDGET, json.dumps(data, separators=(",", ":")), data,
                             session.alerts_seq, int(alert.get("detected_at") or 0))
        session.widgets[PATTERN_WIDGET] = widget
        change = Change(session, widget, gap=False, overview_changed=True)
        self._emit(change)
        return change

    def remove_widget(self, session_id: str, widget: str) -> bool:
        """Apply a tombstone (an erasure): forget the widget, and the session once no widget
        of the worker's is left. Returns whether anything was held."""
        session = self.sessions.get(session_id)
        if session is None or session.widgets.pop(widget, None) is None:
            return False
        if not any(name != PATTERN_WIDGET for name in session.widgets):
            del self.sessions[session_id]
        return True

    def forget_session(self, session_id: str) -> bool:
        """Drop everything held for a session (its telemetry was erased)."""
        return self.sessions.pop(session_id, None) is not None

    def _emit(self, change: Change) -> None:
        for listener in self.listeners:
            listener(change)

    def visible(self, may_see: Callable[[str | None], bool]) -> list[SessionState]:
        return [s for s in self.sessions.values() if may_see(s.owner)]


_OVERVIEW_WIDGETS = frozenset({"session_summary", "session_progress", "agent_timeline", "cost",
                               "error_log"})
