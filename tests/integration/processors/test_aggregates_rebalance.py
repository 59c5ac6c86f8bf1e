"""Partitions of the aggregates move between live workers: a second worker joins while sessions
flow, then the first leaves (SIGTERM) while more flow. Each handover checkpoints what the old
owner folded and the new owner recovers it from the changelogs, so the widgets end exact, no
sequence number is reused, and under exactly_once every alert is committed once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aggregates_harness import Reader, WorkerRun, produce, worker_run
from test_aggregates_kafka import expected_widgets
from test_aggregates_restart import long_session

pytestmark = pytest.mark.integration

SESSIONS = [f"r-{i}" for i in range(8)]
"""Enough sessions that every one of the 4 partitions holds some (crc32 of the key)."""


@pytest.fixture(params=["exactly_once", "at_least_once"])
def first(request: pytest.FixtureRequest, kafka_bootstrap: str,
          tmp_path: Path) -> Iterator[WorkerRun]:
    env = {"AGENTWATCH_WORKER__PROCESSING_GUARANTEE": request.param,
           "AGENTWATCH_WORKER__STAGES": '["aggregates"]'}
    (tmp_path / "a").mkdir()
    with worker_run(kafka_bootstrap, tmp_path / "a", extra_env=env, partitions=4) as run:
        yield run


def summaries_at(counts: dict[str, int]) -> Callable[[Reader], bool]:
    def done(r: Reader) -> bool:
        latest = r.latest()
        return all(latest.get((sid, "session_summary"), {}).get("data", {}).get("events") == n
                   for sid, n in counts.items())
    return done


def test_partitions_move_between_live_workers_without_loss_or_reuse(
        first: WorkerRun, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    # Same prefix: the same topics, app id and consumer group; its own port and instance id.
    second = WorkerRun(bootstrap=first.bootstrap, prefix=first.prefix, workdir=tmp_path / "b",
                       extra_env=first.extra_env, partitions=first.partitions)
    sessions = {sid: long_session(sid) for sid in SESSIONS}
    total = {sid: len(ev) for sid, ev in sessions.items()}
    events_topic = first.topic("events")
    widgets = Reader(first.bootstrap, first.topic("widgets"))
    patterns = Reader(first.bootstrap, first.topic("patterns"))

    def chunk(start: int, end: int) -> list[dict[str, Any]]:
        return [e for ev in sessions.values() for e in ev[start:end]]

    try:
        first.start()
        produce(first.bootstrap, events_topic, chunk(0, 40))
        widgets.poll_until(summaries_at({sid: 40 for sid in SESSIONS}), timeout_s=60)
        second.start()  # returns once it owns partitions: the first gave some up
        shares = (first.health() or {}).get("assigned_partitions"), \
            (second.health() or {}).get("assigned_partitions")
        produce(first.bootstrap, events_topic, chunk(40, 90))
        widgets.poll_until(summaries_at({sid: 90 for sid in SESSIONS}), timeout_s=60)
        folded_by_first = first.metric("agentwatch_widget_events_total ")
        first.stop()  # SIGTERM: its partitions move to the second worker
        produce(first.bootstrap, events_topic, chunk(90, 10_000))
        widgets.poll_until(summaries_at(total), timeout_s=75, settle_s=1.5)
        folded_by_second = second.metric("agentwatch_widget_events_total ")
        patterns.poll_until(
            lambda r: {(a["session_id"], a["pattern"]) for *_x, a in r.records} >= {
                (sid, p) for sid in SESSIONS for p in ("compile_fix_loop", "session_completed")},
            timeout_s=30, settle_s=1.5)
    finally:
        second.stop()
        widgets.close()
        patterns.close()

    assert shares == (2, 2), shares
    # Both folded: the partitions really moved (the first worker's count covers the first 90
    # events of its sessions, the second's the rest of everything after it joined).
    assert 0 < folded_by_first < sum(total.values()) and folded_by_second > 0
    latest = widgets.latest()
    for sid, events in sessions.items():
        want = expected_widgets(events)
        assert {w: latest[(sid, w)]["data"] for w in want} == want, sid
        versions = [r["version"] for *_x, r in widgets.records if r["session_id"] == sid]
        assert versions == sorted(set(versions)), f"{sid}: a version was reused or went backwards"
        counts = [r["data"]["events"] for r in widgets.latest_each(sid, "session_summary")]
        assert counts == sorted(counts) and counts[-1] == total[sid], "summary reset or overshot"
    alerts = [a for *_x, a in patterns.records]
    for sid in SESSIONS:
        for pattern in ("compile_fix_loop", "session_completed"):
            ids = {a["alert_id"] for a in alerts if a["session_id"] == sid and a["pattern"] == pattern}
            assert len(ids) == 1, (sid, pattern, ids)
    if first.extra_env["AGENTWATCH_WORKER__PROCESSING_GUARANTEE"] == "exactly_once":
        # Alerts commit with the offsets of the events that raised them: a handover never
        # raises one again.
        repeated = {i: n for i, n in Counter(a["alert_id"] for a in alerts).items() if n > 1}
        assert repeated == {}, repeated
