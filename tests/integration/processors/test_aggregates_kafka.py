"""Widgets and patterns through a real worker and broker: scripted sessions in, exact outputs out."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aggregates_harness import Reader, WorkerRun, produce, worker_run

from pipeline.model import new_event, now_us
from processors.widgets.processor import widget_partition
from processors.widgets.reducers import WIDGETS, apply, new_state, render

pytestmark = pytest.mark.integration

_seq = itertools.count()


def script(session: str, steps: list[tuple[str, dict[str, Any]]], **kw: Any) -> list[dict[str, Any]]:
    t0 = now_us() - 10_000_000
    return [new_event(etype, session, payload, timestamp_us=t0 + i * 1000, agent="main",
                      source="hook", event_id=f"{session}-{next(_seq)}", **kw.get(etype, {}))
            for i, (etype, payload) in enumerate(steps)]


def build(code: int) -> tuple[str, dict[str, Any]]:
    return ("command.executed", {"binary": "cargo", "args": ["build"], "exit_code": code,
                                 "duration_ms": 900, "cpu_user_ms": 800})


def edit(path: str = "src/lib.rs") -> tuple[str, dict[str, Any]]:
    return ("file.write", {"path": path, "lines_added": 2, "lines_removed": 1})


def test_run(name: str, outcome: str) -> tuple[str, dict[str, Any]]:
    return ("test.executed", {"suite": "tests/test_x.py", "test_name": name, "outcome": outcome,
                              "duration_ms": 100})


run_test = test_run
del test_run  # a step builder, not a test


def sessions(tag: str) -> dict[str, list[dict[str, Any]]]:
    start = ("session.started", {})
    end = ("session.ended", {"reason": "exit"})
    return {
        f"{tag}-loop": script(f"{tag}-loop", [
            start, ("user.prompt", {"prompt_length": 30}),
            *[step for _ in range(4) for step in (edit(), build(101))],
            ("llm.request", {"model": "claude-sonnet", "input_tokens": 1200, "output_tokens": 300,
                             "cost_usd": 0.25}),
            ("resource.sample", {"memory_mib": 512.0, "cpu_pct": 35.0, "memory_limit_mib": 2048.0}),
            ("network.request", {"protocol": "https", "domain": "crates.io", "bytes_sent": 100,
                                 "bytes_received": 900}),
            ("agent.task.completed", {"input_description": "fix the build"}),
            end,
        ], **{"session.started": {"metadata": {"user_id": "alice"}}}),
        # Negative cases: three compile errors do not fire; fail, fail, edit, pass is not flaky.
        f"{tag}-calm": script(f"{tag}-calm", [
            start,
            *[step for _ in range(3) for step in (edit(), build(101))],
            run_test("test_a", "failed"), run_test("test_a", "failed"), edit("tests/test_x.py"),
            run_test("test_a", "passed"), end,
        ]),
        f"{tag}-flaky": script(f"{tag}-flaky", [
            start, run_test("test_b", "passed"), run_test("test_b", "failed"),
            run_test("test_b", "passed"), end,
        ]),
        # Never ends and goes quiet: only the stall timer can notice.
        f"{tag}-quiet": script(f"{tag}-quiet", [start, edit()]),
    }


def expected_widgets(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    state = new_state(events[0]["session_id"])
    touched: set[str] = set()
    for e in events:
        touched |= apply(state, e)
    return {w: render(state, w) for w in WIDGETS if w in touched}


@pytest.fixture(params=["librdkafka", "faust"])
def worker(request: pytest.FixtureRequest, kafka_bootstrap: str,
           tmp_path: Path) -> Iterator[WorkerRun]:
    """Both runtimes of the aggregates (worker.aggregates_runtime): the Faust agent is kept for a
    release and must give the same outputs as the loop that replaced it."""
    env = {"AGENTWATCH_PATTERNS__STALL_AFTER_S": "3", "AGENTWATCH_PATTERNS__STALL_CHECK_INTERVAL_S": "0.5",
           "AGENTWATCH_WORKER__AGGREGATES_RUNTIME": request.param}
    with worker_run(kafka_bootstrap, tmp_path, extra_env=env) as run:
        yield run


def test_scripted_sessions_give_exact_widgets_and_alerts(worker: WorkerRun) -> None:
    worker.start()
    script_by_session = sessions("s")
    produce(worker.bootstrap, worker.topic("events"),
            [e for events in script_by_session.values() for e in events])
    want = {(sid, w): data for sid, events in script_by_session.items()
            for w, data in expected_widgets(events).items()}

    widgets = Reader(worker.bootstrap, worker.topic("widgets"))
    patterns = Reader(worker.bootstrap, worker.topic("patterns"))
    try:
        def widgets_match(r: Reader) -> bool:
            latest = r.latest()
            return all(k in latest and latest[k]["data"] == v for k, v in want.items())

        widgets.poll_until(widgets_match, timeout_s=60, settle_s=1.5)
        expected_alerts = Counter({
            ("s-loop", "compile_fix_loop"): 1, ("s-loop", "task_completed"): 1,
            ("s-loop", "session_completed"): 1, ("s-calm", "session_completed"): 1,
            ("s-flaky", "flaky_test"): 1, ("s-flaky", "session_completed"): 1,
            ("s-quiet", "stalled_session"): 1,
        })

        def alerts_seen(r: Reader) -> bool:
            got = Counter((rec["session_id"], rec["pattern"]) for _p, _k, rec in r.records)
            return all(got[k] >= n for k, n in expected_alerts.items())

        patterns.poll_until(alerts_seen, timeout_s=60, settle_s=2.0)
    finally:
        widgets.close()
        patterns.close()

    latest = widgets.latest()
    assert {k: v["data"] for k, v in latest.items()} == want  # nothing extra, nothing stale
    summary = latest[("s-loop", "session_summary")]["data"]
    assert summary["status"] == "completed" and summary["user_id"] == "alice"
    assert summary["counts"]["commands"] == 4 and summary["events"] == 15
    calm = latest[("s-calm", "session_summary")]["data"]["counts"]
    assert (calm["tests_run"], calm["tests_failed"], calm["files_modified"]) == (3, 2, 2)
    assert latest[("s-calm", "error_log")]["data"]["open"] == 0
    assert latest[("s-loop", "cost")]["data"]["total_usd"] == 0.25
    assert all(v["agent"] == "main" for v in latest.values())
    # Keys per widget, one partition per session, gap-free increasing versions per session.
    for sid in script_by_session:
        recs = [(p, k, r) for p, k, r in widgets.records if r["session_id"] == sid]
        assert {k.decode() for _p, k, _r in recs} == {f"{sid}/{r['widget']}" for *_x, r in recs}
        assert {p for p, _k, _r in recs} == {widget_partition(sid, worker.partitions)}
        assert [r["version"] for *_x, r in recs] == list(range(1, len(recs) + 1))
        assert recs[-1][2]["timestamp"] <= script_by_session[sid][-1]["timestamp"]

    alerts = [rec for _p, _k, rec in patterns.records]
    assert Counter((a["session_id"], a["pattern"]) for a in alerts) == expected_alerts
    loop = next(a for a in alerts if a["pattern"] == "compile_fix_loop")
    builds = [e["event_id"] for e in script_by_session["s-loop"]
              if e["event_type"] == "command.executed"]
    assert loop["evidence_event_ids"] == builds and loop["suggested_mitigation"]
    flaky = next(a for a in alerts if a["pattern"] == "flaky_test")
    assert len(flaky["evidence_event_ids"]) == 3
    assert all(k == a["session_id"].encode() for (_p, k, a) in patterns.records)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
