"""Notification triggers: single events worth telling a human about, as PatternAlert records.

Not failure patterns (no window, no state) but they travel the same way, so the alerting
consumer has one input and one de-duplication: task completed/failed, a critical error, a
session completed. A stalled session is the ``stalled_session`` pattern. Ids derive from the
event id, so a replayed event yields the same alert id and is delivered once.
"""

from __future__ import annotations

from typing import Any

from pipeline.model import AGENT_TASK_EVENT, Severity
from processors.patterns.detectors import alert_id

Event = dict[str, Any]
Alert = dict[str, Any]

TRIGGERS = ("task_completed", "task_failed", "critical_error", "session_completed")


def _alert(event: Event, pattern: str, severity: Severity, message: str) -> Alert:
    ts = event["timestamp"]
    return {
        "alert_id": alert_id(event["session_id"], pattern, event["event_id"]),
        "pattern": pattern,
        "session_id": event["session_id"],
        "agent": event.get("agent") or "unknown",
        "severity": severity.value,
        "window_start": ts,
        "window_end": ts,
        "evidence_event_ids": [event["event_id"]],
        "message": message[:1000],
        "suggested_mitigation": None,
        "detected_at": ts,
    }


def notification_triggers(event: Event) -> list[Alert]:
    etype = event.get("event_type", "")
    payload: tuple[str, dict[str, Any]] = event.get("payload") or ("", {})
    name, body = payload
    task: dict[str, Any] = body if name == AGENT_TASK_EVENT else {}
    what = task.get("input_description") or task.get("task_type") or "task"
    out: list[Alert] = []
    if etype == "agent.task.completed":
        out.append(_alert(event, "task_completed", Severity.INFO, f"{what} completed"))
    elif etype == "agent.task.failed":
        detail = task.get("error_message") or task.get("error_type") or "no error message"
        out.append(_alert(event, "task_failed", Severity.ERROR, f"{what} failed: {detail}"))
    elif etype == "session.ended":
        reason = body.get("reason")
        out.append(_alert(event, "session_completed", Severity.INFO,
                          "session completed" + (f" ({reason})" if reason else "")))
    if event.get("severity") == Severity.CRITICAL.value:
        detail = (body.get("error_message") or body.get("message") or body.get("stderr_excerpt")
                  or etype)
        out.append(_alert(event, "critical_error", Severity.CRITICAL,
                          f"critical {etype}: {detail}"))
    return out
