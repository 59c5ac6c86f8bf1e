"""Replay through the real worker: a session goes live (ingest -> redact -> events -> aggregates ->
widgets), is archived by the real archive sink, then `agentwatch replay SESSION --speed 0` puts it
on the replay topic, and the worker's replay agent rebuilds its widgets under the replay's view id.

Compared field for field with the live run's final widgets, except what legitimately depends on
when the worker rendered (named in ``comparable``): ``version`` (how many coalesced updates were
sent), ``session_id`` (the view's own id by design), and, for widgets the final event did not
change, ``timestamp`` and ``file_heatmap``'s ``heat`` (both derived from the last event folded at
the moment the widget was rendered). Every other field is compared exactly.
"""

from __future__ import annotations

import copy
import json
import urllib.request
import uuid
from pathlib import Path

import pytest
from aggregates_harness import worker_run
from replay_support import TopicLog, comparable, events_count, go_live_and_archive, start_worker

from pipeline.cli import main
from pipeline.replays import view_session_id
from processors.widgets.processor import widget_partition
from processors.widgets.reducers import apply, new_state

pytestmark = pytest.mark.integration


def test_replay_rebuilds_the_live_final_widgets_under_its_own_view(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    idle_timeout_s = 8.0
    with worker_run(kafka_bootstrap, tmp_path) as run:
        start_worker(run, idle_timeout_s)
        widgets = TopicLog(kafka_bootstrap, run.topic("widgets"))
        patterns = TopicLog(kafka_bootstrap, run.topic("patterns"))
        sid = f"sim-{uuid.uuid4().hex[:8]}"
        session, env = go_live_and_archive(run, (tmp_path / "archive").as_uri(), tmp_path,
                                           widgets, sid)
        patterns.read_until("the live build-loop alert", lambda log: any(
            r is not None and r["pattern"] == "compile_fix_loop" for _p, _k, r in log.records))
        live_records = copy.deepcopy(widgets.of(sid))
        alerts_before = len(patterns.records)

        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert main(["replay", sid, "--speed", "0", "--no-clickhouse"]) == 0
        replay_id = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["replay_id"]
        view = view_session_id(replay_id)

        widgets.read_until("the replay view's last event",
                           lambda log: events_count(log, view) == len(session), settle_s=1.5)
        live, replayed = widgets.latest(sid), widgets.latest(view)
        state = new_state(sid)
        for event in session:
            last_changed = apply(state, event)
        assert set(replayed) == set(live) and len(live) == 8
        for widget in live:
            final = widget in last_changed
            assert comparable(replayed[widget], final) == comparable(live[widget], final), widget
        # What was ignored for widgets the last event did not change is still what the live run
        # could have shown: never later than the final event, never before the widget's content.
        assert all(r["timestamp"] <= session[-1]["timestamp"] for r in replayed.values())

        view_records = [(p, k, r) for p, k, r in widgets.records if r is not None
                        and r["session_id"] == view]
        assert {k.decode() for _p, k, _r in view_records} == {f"{view}/{w}" for w in live}
        assert {p for p, _k, _r in view_records} == {widget_partition(view, run.partitions)}
        assert [r["version"] for *_x, r in view_records] == list(range(1, len(view_records) + 1))

        # The live session's records are untouched, and nothing else appeared on the topic.
        assert widgets.of(sid) == live_records
        assert {r["session_id"] for _p, _k, r in widgets.records if r is not None} == {sid, view}

        # The idle view is dropped: a tombstone for each of its widget keys.
        def dropped(log: TopicLog) -> bool:
            tombs = {k.decode() for _p, k, r in log.records if r is None}
            return tombs >= {f"{view}/{w}" for w in live}

        widgets.read_until("the view's tombstones", dropped, timeout_s=idle_timeout_s + 30)
        tombstones = [(p, k) for p, k, r in widgets.records if r is None]
        assert all(k.decode().startswith(f"{view}/") for _p, k in tombstones)
        assert widgets.of(sid) == live_records

        # No pattern ran on the replay: no new alert, for the view or the session.
        patterns.read_until("the settled patterns topic", lambda _log: True, settle_s=1.0)
        assert len(patterns.records) == alerts_before
        health = run.health()
        assert health is not None and health["healthy"] and not health["crashed"]
        with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert f'agentwatch_replay_records_total{{outcome="folded"}} {float(len(session))}' \
            in metrics.splitlines()
        assert "agentwatch_replay_views_dropped_total 1.0" in metrics.splitlines()
        widgets.close()
        patterns.close()
