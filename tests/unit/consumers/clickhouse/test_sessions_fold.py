"""The pure session fold: counters, status, and idempotence on Kafka positions."""

from __future__ import annotations

from typing import Any

from consumers.clickhouse.sessions import SESSION_COLUMNS, fold_session, session_row
from pipeline import model

T0 = 1_764_000_000_000_000


def ev(event_type: str, payload: dict[str, Any] | None = None, dt_s: int = 0,
       **kw: Any) -> dict[str, Any]:
    return model.new_event(event_type, "s1", payload, timestamp_us=T0 + dt_s * 1_000_000, **kw)


def located(events: list[dict[str, Any]], start: int = 0) -> list[tuple[Any, str, int, int]]:
    return [(e, "events", 0, start + i) for i, e in enumerate(events)]


def session_events() -> list[dict[str, Any]]:
    return [
        ev("session.started", {"reason": "startup", "cwd": "/w", "model": "opus",
                                "permission_mode": "default"}),
        ev("file.write", {"path": "a.py", "lines_added": 10, "lines_removed": 3}, 1),
        ev("command.executed", {"binary": "pytest", "exit_code": 1}, 2),
        ev("command.executed", {"binary": "ls", "exit_code": 0}, 3),
        ev("test.executed", {"suite": "u", "test_name": "a", "outcome": "passed"}, 4),
        ev("test.executed", {"suite": "u", "test_name": "b", "outcome": "errored"}, 5),
        ev("build.completed", {"component": "api", "outcome": "failure"}, 6),
        ev("llm.request", {"model": "opus", "input_tokens": 100, "output_tokens": 10,
                           "cache_read_tokens": 3, "cache_creation_tokens": 4, "cost_usd": 0.5}, 7),
        ev("session.stalled", {"idle_ms": 1000}, 8),
        ev("notification", {"message": "back"}, 9),
        ev("session.ended", {"reason": "exit"}, 10),
    ]


def test_a_session_is_summarised() -> None:
    s = fold_session(None, "s1", located(session_events()))
    assert s is not None
    assert s["status"] == "ended" and s["end_reason"] == "exit"
    assert s["started_us"] == T0 and s["last_event_us"] == T0 + 10_000_000
    assert s["ended_us"] == T0 + 10_000_000 and s["started_at"] == T0 // 1_000_000
    assert (s["cwd"], s["model"], s["permission_mode"]) == ("/w", "opus", "default")
    assert s["events"] == 11 and s["files_written"] == 1
    assert (s["lines_added"], s["lines_removed"]) == (10, 3)
    assert (s["commands"], s["commands_failed"]) == (2, 1)
    assert (s["tests_passed"], s["tests_failed"]) == (1, 1)
    assert (s["builds"], s["builds_failed"]) == (1, 1)
    assert (s["llm_requests"], s["input_tokens"], s["output_tokens"], s["cost_usd"]) == (
        1, 100, 10, 0.5)
    assert s["errors"] == 1  # the failed build
    assert s["warnings"] == 3  # failed command, errored test, stalled session
    assert (s["kafka_topic"], s["kafka_partition"], s["kafka_offset"]) == ("events", 0, 10)
    assert s["version"] == 1
    assert len(session_row(s)) == len(SESSION_COLUMNS)


def test_folding_in_two_batches_equals_one() -> None:
    events = located(session_events())
    once = fold_session(None, "s1", events)
    first = fold_session(None, "s1", events[:4])
    twice = fold_session(first, "s1", events[4:])
    assert once is not None and twice is not None
    assert {k: v for k, v in twice.items() if k != "version"} == {
        k: v for k, v in once.items() if k != "version"}
    assert twice["version"] == 2


def test_a_replayed_batch_is_not_counted_again() -> None:
    events = located(session_events())
    state = fold_session(None, "s1", events[:6])
    assert state is not None
    assert fold_session(state, "s1", events[:6]) is None
    replay_plus_new = fold_session(state, "s1", events[3:8])
    assert replay_plus_new is not None
    assert replay_plus_new["events"] == 8 and replay_plus_new["version"] == 2


def test_stalled_then_active_again() -> None:
    s = fold_session(None, "s1", located([ev("session.started"), ev("session.stalled", dt_s=5)]))
    assert s is not None and s["status"] == "stalled"
    s2 = fold_session(s, "s1", located([ev("file.read", {"path": "x"}, 6)], start=2))
    assert s2 is not None and s2["status"] == "active"


def test_out_of_order_events_keep_the_earliest_start() -> None:
    s = fold_session(None, "s1", located([ev("file.read", {"path": "x"}, 5),
                                          ev("session.started", dt_s=0)]))
    assert s is not None and s["started_us"] == T0 and s["last_event_us"] == T0 + 5_000_000
