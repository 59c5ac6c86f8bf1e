from __future__ import annotations

from pipeline.model import new_event
from processors.patterns.triggers import notification_triggers

T0 = 1_700_000_000_000_000


def patterns(event: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(a["pattern"], a["severity"]) for a in notification_triggers(event)]


def test_task_and_session_outcomes_trigger() -> None:
    done = new_event("agent.task.completed", "s", {"input_description": "fix the parser"},
                     timestamp_us=T0, event_id="e1")
    alerts = notification_triggers(done)
    assert [(a["pattern"], a["severity"]) for a in alerts] == [("task_completed", "info")]
    assert alerts[0]["message"] == "fix the parser completed"
    assert alerts[0]["evidence_event_ids"] == ["e1"]
    failed = new_event("agent.task.failed", "s", {"error_message": "boom"}, timestamp_us=T0)
    assert patterns(failed) == [("task_failed", "error")]
    ended = new_event("session.ended", "s", {"reason": "exit"}, timestamp_us=T0)
    assert patterns(ended) == [("session_completed", "info")]


def test_critical_events_trigger_and_ordinary_ones_do_not() -> None:
    crit = new_event("command.executed", "s", {"binary": "rm", "exit_code": 1,
                                               "stderr_excerpt": "disk full"},
                     severity="critical", timestamp_us=T0)
    alerts = notification_triggers(crit)
    assert [a["pattern"] for a in alerts] == ["critical_error"]
    assert "disk full" in alerts[0]["message"]
    assert notification_triggers(new_event("file.write", "s", {"path": "a"}, timestamp_us=T0)) == []
    assert notification_triggers(new_event("command.executed", "s", {"binary": "x", "exit_code": 2},
                                           severity="error", timestamp_us=T0)) == []


def test_ids_are_deterministic_per_event() -> None:
    e = new_event("session.ended", "s", {}, timestamp_us=T0, event_id="same")
    assert notification_triggers(e) == notification_triggers(dict(e))
    other = new_event("session.ended", "s", {}, timestamp_us=T0, event_id="other")
    assert notification_triggers(e)[0]["alert_id"] != notification_triggers(other)[0]["alert_id"]
