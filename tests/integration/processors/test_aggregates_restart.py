"""SIGKILL the worker mid-session and restart it: state recovers from the changelogs, the next
updates continue where they were (no reset, no double count) and no alert is lost or doubled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aggregates_harness import Reader, WorkerRun, produce, worker_run
from test_aggregates_kafka import build, edit, expected_widgets, run_test, script

pytestmark = pytest.mark.integration


def long_session(sid: str) -> list[dict[str, Any]]:
    steps: list[tuple[str, dict[str, Any]]] = [("session.started", {})]
    for i in range(40):
        steps += [edit(f"src/m{i % 5}.py"), build(0 if i % 4 else 2),
                  ("llm.request", {"model": "claude-sonnet", "input_tokens": 10, "cost_usd": 0.01})]
        if i % 10 == 9:
            steps += [run_test(f"t{i}", "failed"), run_test(f"t{i}", "passed")]
    # A compile-fix loop late in the session, so it straddles the kill.
    steps += [s for _ in range(5) for s in (edit(), build(1))]
    steps.append(("session.ended", {"reason": "exit"}))
    return script(sid, steps)


@pytest.fixture(params=["exactly_once", "at_least_once"])
def worker(request: pytest.FixtureRequest, kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerRun]:
    env = {"AGENTWATCH_WORKER__PROCESSING_GUARANTEE": request.param,
           # Frequent checkpoints: the kill lands between many of them.
           "AGENTWATCH_WIDGETS__CHECKPOINT_INTERVAL_MS": "100"}
    with worker_run(kafka_bootstrap, tmp_path, extra_env=env) as run:
        yield run


def test_sigkill_mid_session_recovers_exact_state(worker: WorkerRun) -> None:
    sessions = {sid: long_session(sid) for sid in ("k-1", "k-2")}
    total = {sid: len(ev) for sid, ev in sessions.items()}
    first = {sid: ev[:50] for sid, ev in sessions.items()}
    widgets = Reader(worker.bootstrap, worker.topic("widgets"))
    patterns = Reader(worker.bootstrap, worker.topic("patterns"))

    def summaries_at(counts: dict[str, int]) -> Any:
        def done(r: Reader) -> bool:
            latest = r.latest()
            return all(latest.get((sid, "session_summary"), {}).get("data", {}).get("events") == n
                       for sid, n in counts.items())
        return done

    try:
        worker.start()
        produce(worker.bootstrap, worker.topic("events"), [e for ev in first.values() for e in ev])
        widgets.poll_until(summaries_at({sid: 50 for sid in sessions}), timeout_s=60)
        # Kill while the next chunk is being processed; the rest arrives while it is down.
        produce(worker.bootstrap, worker.topic("events"),
                [e for ev in sessions.values() for e in ev[50:120]])
        worker.kill()
        before_kill = len(widgets.records)
        produce(worker.bootstrap, worker.topic("events"),
                [e for ev in sessions.values() for e in ev[120:]])
        worker.start()
        try:
            widgets.poll_until(summaries_at(total), timeout_s=75, settle_s=1.5)
        except AssertionError as exc:
            # Flaky in CI about 1 run in 6 (exactly_once): the restarted worker's log says why.
            raise AssertionError(f"{exc}\nrestarted worker's log:\n{worker.log_tail(12000)}") from None
        patterns.poll_until(
            lambda r: {(a["session_id"], a["pattern"]) for *_x, a in r.records} >= {
                (sid, p) for sid in sessions for p in ("compile_fix_loop", "session_completed")},
            timeout_s=30, settle_s=1.0)
    finally:
        widgets.close()
        patterns.close()

    assert before_kill > 0
    latest = widgets.latest()
    for sid, events in sessions.items():
        want = expected_widgets(events)
        assert {w: latest[(sid, w)]["data"] for w in want} == want
        recs = [r for *_x, r in widgets.records if r["session_id"] == sid]
        versions = [r["version"] for r in recs]
        assert versions == sorted(set(versions)), "a version was reused or went backwards"
        counts = [r["data"]["events"] for r in (widgets.latest_each(sid, "session_summary"))]
        assert counts == sorted(counts) and counts[-1] == total[sid], "summary reset or overshot"
    alerts = [a for *_x, a in patterns.records]
    for sid in sessions:
        for pattern in ("compile_fix_loop", "session_completed", "flaky_test"):
            ids = {a["alert_id"] for a in alerts if a["session_id"] == sid and a["pattern"] == pattern}
            # Redelivery after a crash repeats an alert with its id (consumers dedupe), never a new one.
            assert len(ids) == (0 if pattern == "flaky_test" else 1), (sid, pattern, ids)
