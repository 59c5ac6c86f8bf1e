from __future__ import annotations

import copy
import itertools
import json
import random
from typing import Any

import pytest

from pipeline.model import new_event
from processors.patterns.detectors import (
    DETECTORS,
    MINUTE_US,
    PatternConfig,
    alert_id,
    check_stall,
    cost_spike,
    observe,
    record_liveness,
)

CFG = PatternConfig()
T0 = 1_700_000_000_000_000
_ids = itertools.count()


def ev(event_type: str, payload: dict[str, Any], minute: float = 0, **kw: Any) -> dict[str, Any]:
    return new_event(event_type, "s-1", payload, timestamp_us=T0 + int(minute * MINUTE_US),
                     event_id=f"e{next(_ids)}", source=kw.pop("source", "hook"), **kw)


def compile_err(minute: float, exit_code: int = 1) -> dict[str, Any]:
    return ev("command.executed", {"binary": "cargo", "args": ["build"], "exit_code": exit_code},
              minute)


def fix_cycle(minutes: list[float]) -> list[dict[str, Any]]:
    """A compile-fix loop as agents run it: edit, build, fail, edit again."""
    return [e for m in minutes for e in (write(m - 0.01), compile_err(m))]


def test_run(events: list[dict[str, Any]], state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    st = state if state is not None else {}
    return [a for e in events for a in observe(st, e, CFG, now_us=e["timestamp"])]


run = test_run
del test_run  # not a test


def patterns(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["pattern"] for a in alerts]


def test_three_compile_errors_do_not_fire_four_do() -> None:
    assert patterns(run(fix_cycle([0, 1, 2]))) == []
    alerts = run(fix_cycle([0, 1, 2, 3]))
    assert patterns(alerts) == ["compile_fix_loop"]
    assert len(alerts[0]["evidence_event_ids"]) == 4
    assert alerts[0]["suggested_mitigation"]


def test_compile_errors_spread_beyond_the_window_do_not_fire() -> None:
    assert patterns(run(fix_cycle([0, 2, 4, 6, 8]))) == []


def test_compile_loop_fires_once_until_a_successful_build_clears_it() -> None:
    state: dict[str, Any] = {}
    first = run(fix_cycle([m / 10 for m in range(1, 9)]), state)
    assert patterns(first) == ["compile_fix_loop"]
    again = run([compile_err(1, exit_code=0), *fix_cycle([1 + m / 10 for m in range(1, 5)])], state)
    assert patterns(again) == ["compile_fix_loop"]
    assert again[0]["alert_id"] != first[0]["alert_id"]


def test_non_compile_commands_are_ignored() -> None:
    events = [ev("command.executed", {"binary": "ls", "exit_code": 2}, m) for m in range(6)]
    assert "compile_fix_loop" not in patterns(run(events))


def t(outcome: str, minute: float, name: str = "test_a") -> dict[str, Any]:
    return ev("test.executed", {"suite": "tests/test_x.py", "test_name": name, "outcome": outcome,
                                "duration_ms": 100}, minute)


def write(minute: float) -> dict[str, Any]:
    return ev("file.write", {"path": "src/x.py", "lines_added": 1}, minute)


def test_alternating_outcomes_without_changes_are_flaky_once() -> None:
    alerts = run([t("passed", 0), t("failed", 1), t("passed", 2), t("failed", 3), t("passed", 4)])
    assert patterns(alerts) == ["flaky_test"]
    assert "tests/test_x.py::test_a" in alerts[0]["message"]


def test_fail_fail_then_pass_after_a_change_is_not_flaky() -> None:
    assert patterns(run([t("failed", 0), t("failed", 1), write(2), t("passed", 3)])) == []


def test_alternation_explained_by_changes_is_not_flaky() -> None:
    assert patterns(run([t("failed", 0), write(0.5), t("passed", 1), write(1.5), t("failed", 2)])) == []


def test_each_test_has_its_own_history() -> None:
    events = [t("passed", 0, "a"), t("failed", 1, "b"), t("passed", 2, "a"), t("failed", 3, "b")]
    assert patterns(run(events)) == []


def run_cmd(peak: float, minute: float) -> dict[str, Any]:
    return ev("command.executed", {"binary": "pytest", "args": ["-x"], "exit_code": 0,
                                   "peak_memory_mib": peak}, minute)


def test_memory_growth_over_three_runs_fires() -> None:
    alerts = run([run_cmd(100, 0), run_cmd(130, 1), run_cmd(170, 2), run_cmd(230, 3)])
    assert patterns(alerts) == ["memory_growth"]


def test_modest_memory_growth_does_not_fire() -> None:
    assert patterns(run([run_cmd(100, 0), run_cmd(115, 1), run_cmd(170, 2)])) == []
    assert patterns(run([run_cmd(100, 0), run_cmd(130, 1)])) == []


def timed(duration: int, minute: float) -> dict[str, Any]:
    return ev("test.executed", {"suite": "unit", "test_name": f"t{minute}", "outcome": "passed",
                                "duration_ms": duration}, minute)


def test_slow_test_against_running_median() -> None:
    base = [timed(100, m) for m in range(5)]
    assert patterns(run([*base, timed(190, 6)])) == []
    alerts = run([*base, timed(250, 6), timed(260, 7)])
    assert patterns(alerts) == ["slow_test"]


def test_slow_test_needs_enough_history() -> None:
    assert patterns(run([timed(100, 0), timed(100, 1), timed(900, 2)])) == []


def fail(minute: float, code: int = 1) -> dict[str, Any]:
    return ev("command.executed", {"binary": "curl", "args": ["http://x"], "exit_code": code}, minute)


def test_retry_storm_after_n_consecutive_failures() -> None:
    assert patterns(run([fail(0), fail(1), fail(2, 0), fail(3), fail(4)])) == []
    assert patterns(run([fail(0), fail(1), write(1.5), fail(2), fail(3)])) == []
    alerts = run([fail(0), fail(1), fail(2), fail(3)])
    assert patterns(alerts) == ["retry_storm"]
    assert len(alerts[0]["evidence_event_ids"]) == 3


def llm(cost: float, minute: float) -> dict[str, Any]:
    return ev("llm.request", {"model": "claude", "cost_usd": cost}, minute)


def test_cost_spike_over_rate() -> None:
    # 15-minute window, $20/hour limit: $5 in the window is exactly the limit.
    assert patterns(run([llm(1.0, m) for m in range(5)])) == []
    alerts = run([llm(2.0, m) for m in range(4)])
    assert patterns(alerts) == ["cost_spike"]



def test_cost_spike_fires_once_then_clears_when_spend_leaves_the_window() -> None:
    state: dict[str, Any] = {}
    assert patterns(run([llm(2.0, m) for m in range(4)], state)) == ["cost_spike"]
    assert patterns(run([llm(0.5, 5)], state)) == []  # still over the limit: no repeat
    # At minute 17 the first three calls have left the 15-minute window: $2.50, under the limit.
    assert patterns(run([llm(0.01, 17)], state)) == []
    assert state["cost"]["active"] is False
    alerts = run([llm(3.0, 17.5)], state)
    assert patterns(alerts) == ["cost_spike"]
    assert alerts[0]["window_start"] == T0 + 3 * MINUTE_US
    assert len(alerts[0]["evidence_event_ids"]) == 4


def test_cost_spike_state_written_before_the_running_sum_continues() -> None:
    # What the detector persisted before it kept ``sum`` and ``ordered``: the list and the flag.
    calls = [llm(2.0, m) for m in range(4)]
    old = {"cost": {"spend": [[e["timestamp"], 2.0, e["event_id"]] for e in calls],
                    "active": True}}
    state = json.loads(json.dumps(old))
    assert patterns(run([llm(0.5, 5)], state)) == []  # already fired: stays quiet
    assert state["cost"]["sum"] == 8.5 and state["cost"]["ordered"] is True
    assert patterns(run([llm(0.01, 17)], state)) == []  # three calls expired: clears
    assert [s[1] for s in state["cost"]["spend"]] == [2.0, 0.5, 0.01]
    assert state["cost"]["sum"] == 2.0 + 0.5 + 0.01
    alerts = run([llm(3.0, 17.5)], state)
    assert patterns(alerts) == ["cost_spike"]
    assert alerts[0]["evidence_event_ids"] == [calls[3]["event_id"], *[
        s[2] for s in state["cost"]["spend"][1:]]]


def _cost_spike_as_it_was(state: dict[str, Any], event: dict[str, Any],
                          cfg: PatternConfig) -> list[dict[str, Any]]:
    """The detector before the running sum: filter the whole list and sum it on every call."""
    _name, body = event["payload"]
    st = state.setdefault("cost", {"spend": [], "active": False})
    ts = event["timestamp"]
    st["spend"] = [s for s in st["spend"] if s[0] > ts - cfg.cost_window_us]
    st["spend"].append([ts, float(body["cost_usd"]), event["event_id"]])
    rate = sum(s[1] for s in st["spend"]) * (3600_000_000 / cfg.cost_window_us)
    if rate <= cfg.cost_usd_per_hour:
        st["active"] = False
        return []
    if st["active"]:
        return []
    st["active"] = True
    return [{"key": st["spend"][0][2], "window_start": st["spend"][0][0], "rate": f"{rate:.2f}",
             "evidence": [s[2] for s in st["spend"]][-cfg.evidence_limit:]}]


@pytest.mark.parametrize("seed", range(6))
def test_cost_spike_matches_the_full_filter_with_late_events_and_restarts(seed: int) -> None:
    """Random costs (decimals that do not add up exactly in binary), a rate hovering around the
    limit, some events arriving minutes late, and JSON round trips (some to the old format)."""
    rng = random.Random(seed)
    cfg = PatternConfig(cost_usd_per_hour=50.0, cost_window_us=5 * MINUTE_US)
    state: dict[str, Any] = {}
    ref: dict[str, Any] = {}
    minute, fired = 0.0, 0
    for _ in range(1500):
        minute += rng.choice([0.01, 0.05, 0.1, 0.2])
        late = rng.random() < (0.1 if seed % 2 else 0.01)
        e = llm(rng.choice([0.01, 0.03, 0.07, 0.1, 0.2]),
                minute - (rng.uniform(0, 6) if late else 0))
        want = _cost_spike_as_it_was(ref, e, cfg)
        got = cost_spike(state, e, cfg)
        assert [{"key": a["alert_id"], "window_start": a["window_start"],
                 "rate": a["message"].split("$")[1].split("/")[0],
                 "evidence": a["evidence_event_ids"]} for a in got] == [
            {**w, "key": alert_id("s-1", "cost_spike", w["key"])} for w in want]
        assert state["cost"]["spend"] == ref["cost"]["spend"]
        assert state["cost"]["active"] == ref["cost"]["active"]
        assert state["cost"]["sum"] == sum(s[1] for s in ref["cost"]["spend"])
        fired += len(got)
        if rng.random() < 0.05:
            state = json.loads(json.dumps(state))
            if rng.random() < 0.5:
                del state["cost"]["sum"], state["cost"]["ordered"]
    assert fired > 3  # the rate crossed the limit again and again

def test_stalled_session_fires_once_on_the_timer() -> None:
    state: dict[str, Any] = {}
    e = write(0)
    observe(state, e, CFG, now_us=T0)
    assert check_stall("s-1", state, CFG, T0 + 4 * MINUTE_US) == []
    alerts = check_stall("s-1", state, CFG, T0 + 6 * MINUTE_US)
    assert patterns(alerts) == ["stalled_session"]
    assert check_stall("s-1", state, CFG, T0 + 9 * MINUTE_US) == []
    observe(state, write(10), CFG, now_us=T0 + 10 * MINUTE_US)
    assert patterns(check_stall("s-1", state, CFG, T0 + 16 * MINUTE_US)) == ["stalled_session"]


def test_ended_or_backfilled_sessions_never_stall() -> None:
    state: dict[str, Any] = {}
    observe(state, write(0), CFG, now_us=T0)
    observe(state, ev("session.ended", {}, 1), CFG, now_us=T0)
    assert check_stall("s-1", state, CFG, T0 + 60 * MINUTE_US) == []
    backfill: dict[str, Any] = {}
    observe(backfill, ev("file.write", {"path": "a"}, 0, source="transcript"), CFG, now_us=T0)
    assert check_stall("s-1", backfill, CFG, T0 + 60 * MINUTE_US) == []


def test_replaying_events_on_recovered_state_repeats_nothing_and_fresh_state_agrees() -> None:
    events = [*fix_cycle([m / 10 for m in range(1, 7)]), t("passed", 1), t("failed", 2), t("passed", 3)]
    state: dict[str, Any] = {}
    first = run(events[:9], state)
    snapshot = copy.deepcopy(state)  # what a changelog would restore
    rest = run(events[9:], snapshot)
    fresh = run(events)
    assert [a["alert_id"] for a in first + rest] == [a["alert_id"] for a in fresh]
    assert len({a["alert_id"] for a in fresh}) == len(fresh) == 2


def test_a_failed_build_reported_as_command_and_build_counts_once() -> None:
    events: list[dict[str, Any]] = []
    for i, m in enumerate([0, 1, 2, 3]):
        events.append(write(m - 0.01))
        for etype, body in (
            ("command.executed", {"binary": "cargo", "args": ["build"], "exit_code": 101}),
            ("build.completed", {"component": "cargo", "outcome": "failure"}),
        ):
            events.append(ev(etype, body, m, tool_use_id=f"toolu_{i}"))
    assert patterns(run(events[:9])) == []  # three builds, six events
    alerts = run(events)
    assert patterns(alerts) == ["compile_fix_loop"]
    assert len(alerts[0]["evidence_event_ids"]) == 4


def test_slow_test_with_a_zero_median_does_not_crash_or_fire() -> None:
    # Seen in CI: a simulator suite whose runs all reported 0 ms crashed the worker.
    assert patterns(run([*[timed(0, m) for m in range(5)], timed(40, 6)])) == []


def _observe_with_every_detector(state: dict[str, Any], event: dict[str, Any],
                                 now_us: int) -> list[dict[str, Any]]:
    """``observe`` as it was: all six detectors on every event, then the liveness record."""
    alerts = [a for detect in DETECTORS for a in detect(state, event, CFG)]
    record_liveness(state, event, now_us)
    return alerts


def test_observe_skips_only_detectors_an_event_cannot_affect() -> None:
    """``observe`` runs the detectors chosen by payload; running all six must give the same
    alerts and the same state, event by event, including events whose type and payload disagree."""
    rng = random.Random(3)
    kinds: list[Any] = [
        lambda m: compile_err(m, exit_code=rng.choice([0, 1, 1])),
        lambda m: ev("build.completed", {"component": "x", "outcome": rng.choice(
            ["success", "failure"])}, m),
        lambda m: t(rng.choice(["passed", "failed"]), m, rng.choice(["a", "b"])),
        lambda m: timed(rng.choice([100, 100, 400]), m),
        write, lambda m: ev("file.delete", {"path": "src/y.py"}, m),
        lambda m: ev("file.read", {"path": "src/y.py"}, m),
        lambda m: run_cmd(rng.choice([100, 150, 250, 400]), m),
        lambda m: fail(m, rng.choice([0, 1, 1, 1])),
        lambda m: llm(rng.choice([0.5, 2.0]), m),
        lambda m: ev("llm.request", {"model": "claude", "cost_usd": 0.0}, m),
        lambda m: ev("agent.task.progress", {"progress_pct": 10.0}, m),
        lambda m: ev("session.started", {}, m),
        lambda m: ev("session.ended", {}, m),
        lambda m: ev("resource.sample", {"memory_mib": 10.0, "cpu_pct": 5.0}, m),
        lambda m: {**write(m), "payload": ("dev.agentwatch.OtherEvent", {"name": "x"})},
        lambda m: {**fail(m), "event_type": "file.write"},
    ]
    mine: dict[str, Any]
    every: dict[str, Any]
    for kind in kinds:  # each as a session's first event
        e = kind(0)
        mine, every = {}, {}
        assert observe(mine, e, CFG, 0) == _observe_with_every_detector(every, e, 0)
        assert mine == every
    mine, every = {}, {}
    fired: set[str] = set()
    for i in range(3000):
        e = rng.choice(kinds)(i / 10)
        alerts = observe(mine, e, CFG, now_us=e["timestamp"])
        assert alerts == _observe_with_every_detector(every, e, e["timestamp"])
        assert mine == every
        fired.update(patterns(alerts))
    assert fired == {"compile_fix_loop", "flaky_test", "memory_growth", "slow_test",
                     "retry_storm", "cost_spike"}
