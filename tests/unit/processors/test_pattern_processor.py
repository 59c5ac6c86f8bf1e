from __future__ import annotations

import itertools
from typing import Any

from test_widget_processor import Store

from pipeline.model import new_event
from processors.patterns.detectors import MINUTE_US, PatternConfig
from processors.patterns.processor import PatternProcessor

T0 = 1_700_000_000_000_000
_ids = itertools.count()


class ClockUs:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def ev(event_type: str, payload: dict[str, Any], minute: float, session: str = "s-1",
       **kw: Any) -> dict[str, Any]:
    return new_event(event_type, session, payload, timestamp_us=T0 + int(minute * MINUTE_US),
                     event_id=f"p{next(_ids)}", agent="main", source="hook", **kw)


def build_fail(minute: float) -> dict[str, Any]:
    return ev("command.executed", {"binary": "cargo", "args": ["build"], "exit_code": 101}, minute)


def edit(minute: float) -> dict[str, Any]:
    return ev("file.write", {"path": "src/lib.rs"}, minute)


def loop_events(n: int) -> list[dict[str, Any]]:
    return [e for m in range(n) for e in (edit(m / 10), build_fail(m / 10 + 0.05))]


def test_alerts_and_triggers_come_out_of_fold() -> None:
    p = PatternProcessor(Store(), PatternConfig(), clock_us=ClockUs())
    alerts = [a for off, e in enumerate(loop_events(4)) for a in p.fold(0, off, e)]
    assert [a["pattern"] for a in alerts] == ["compile_fix_loop"]
    done = p.fold(0, 100, ev("agent.task.completed", {"task_type": "fix"}, 1))
    assert [a["pattern"] for a in done] == ["task_completed"]
    quiet = PatternProcessor(Store(), PatternConfig(), notifications=False, clock_us=ClockUs())
    assert quiet.fold(0, 0, ev("agent.task.completed", {}, 1)) == []


def test_three_errors_do_not_fire() -> None:
    p = PatternProcessor(Store(), PatternConfig(), clock_us=ClockUs())
    assert [a for off, e in enumerate(loop_events(3)) for a in p.fold(0, off, e)] == []


def test_replay_after_restart_repeats_no_alert() -> None:
    store = Store()
    p = PatternProcessor(store, PatternConfig(), clock_us=ClockUs())
    events = loop_events(5)
    fired = [a for off, e in enumerate(events) for a in p.fold(0, off, e)]
    p.persist()
    assert len(fired) == 1
    again = PatternProcessor(store.recovered(), PatternConfig(), clock_us=ClockUs())
    assert [a for off, e in enumerate(events) for a in again.fold(0, off, e)] == []
    assert again.skipped == len(events)


def test_stall_timer_fires_once_and_survives_recovery() -> None:
    clock, store = ClockUs(), Store()
    p = PatternProcessor(store, PatternConfig(), clock_us=clock)
    p.fold(0, 0, edit(0))
    p.fold(0, 1, ev("file.write", {"path": "a"}, 0, session="ended"))
    p.fold(0, 2, ev("session.ended", {}, 1, session="ended"))
    assert p.live_sessions() == 1
    clock.t += 4 * MINUTE_US
    assert p.check_stalls() == []
    p.persist()
    restarted = PatternProcessor(store.recovered(), PatternConfig(), clock_us=clock)
    assert restarted.resume(restarted.store.data.items()) == 1  # type: ignore[attr-defined]
    clock.t += 2 * MINUTE_US
    stalls = restarted.check_stalls()
    assert [(a["pattern"], a["session_id"]) for a in stalls] == [("stalled_session", "s-1")]
    assert restarted.check_stalls() == []
    assert restarted.persist() == 1  # the stalled flag reaches the changelog


def test_stall_checks_skip_partitions_no_longer_owned() -> None:
    clock = ClockUs()
    p = PatternProcessor(Store(), PatternConfig(), clock_us=clock)
    p.fold(3, 0, edit(0))
    clock.t += 10 * MINUTE_US
    assert p.check_stalls(owned={0, 1}) == []
    assert p.live_sessions() == 0
