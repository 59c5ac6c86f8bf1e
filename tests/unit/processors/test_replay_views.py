"""Replay views: same widgets as the live fold, separate keys, bounded, expiring, never rebuilt
from the middle."""

from __future__ import annotations

import json
from typing import Any

import orjson

from consumers.archive.replay import mark_replay
from consumers.archive.testing import sample_session
from pipeline.replays import view_replay_id, view_session_id
from processors.replay_views import ReplayViews
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import WidgetProcessor, widget_key, widget_partition
from processors.widgets.reducers import apply, new_state, render


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def views(clock: Clock, **kw: Any) -> ReplayViews:
    conf: dict[str, Any] = {"widget_partitions": 3, "coalesce_interval_s": 0.25,
                            "idle_timeout_s": 60.0, "max_views": 4}
    conf.update(kw)
    return ReplayViews(clock=clock, **conf)


def latest(updates: list[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(u.value["session_id"], u.value["widget"]): u.value for u in updates}


def test_a_view_renders_exactly_the_live_widgets_under_its_own_key() -> None:
    session = sample_session("live-1", 60, span_s=600.0)
    clock = Clock()
    rv = views(clock)
    sent = []
    for offset, event in enumerate(session):
        assert rv.fold(0, offset, mark_replay(event, "r1")).outcome == "folded"
        clock.now += 0.01
        sent += rv.flush()
    clock.now += 1.0
    sent += rv.flush()

    state = new_state("live-1")
    changed: set[str] = set()
    for event in session:
        last = apply(state, event)
        changed |= last
    view = view_session_id("r1")
    got = latest(sent)
    assert {w for _s, w in got} == changed and len(changed) >= 6
    # Widgets the final event changed were rendered from the final state (the others when they
    # last changed: their last_ts-derived fields, e.g. heat, are those of that moment).
    for widget in last:
        value = got[(view, widget)]
        assert json.loads(value["data_json"]) == json.loads(orjson.dumps(render(state, widget)))
    assert all(u.key == widget_key(view, u.value["widget"]) for u in sent)
    assert all(u.partition == widget_partition(view, 3) for u in sent)
    # Sequence numbers of a view start at 1 and have no gaps.
    assert [u.value["version"] for u in sent] == list(range(1, len(sent) + 1))
    assert view_replay_id(view) == "r1"


def test_the_live_processor_and_a_view_agree_update_for_update_on_data() -> None:
    session = sample_session("live-2", 30)
    live = WidgetProcessor(_Dict(), Coalescer(0.0), 3)
    rv = views(Clock(), coalesce_interval_s=0.0)
    for offset, event in enumerate(session):
        live.fold(0, offset, event)
        rv.fold(0, offset, mark_replay(event, "r2"))
    mine = {u.value["widget"]: u.value for u in rv.flush()}
    theirs = {u.value["widget"]: u.value for u in live.flush()}
    strip = ("session_id", "version")
    assert {w: {k: v for k, v in u.items() if k not in strip} for w, u in mine.items()} == \
        {w: {k: v for k, v in u.items() if k not in strip} for w, u in theirs.items()}


def test_live_events_duplicates_and_two_replays() -> None:
    session = sample_session("s", 10)
    rv = views(Clock())
    assert rv.fold(0, 0, session[0]).outcome == "not_replay"
    assert rv.fold(0, 1, mark_replay(session[0], "a")).outcome == "folded"
    # Same record again (a re-delivery): the replay guard skips it.
    assert rv.fold(0, 1, mark_replay(session[0], "a")).outcome == "duplicate"
    assert rv.fold(0, 2, mark_replay(session[0], "b")).outcome == "folded"
    assert len(rv) == 2
    sessions = {u.value["session_id"] for u in rv.flush()}
    assert sessions == {view_session_id("a"), view_session_id("b")}


def test_idle_views_expire_with_tombstones_and_are_never_rebuilt_from_the_middle() -> None:
    session = sample_session("s", 10)
    clock = Clock()
    rv = views(clock, idle_timeout_s=60.0)
    for offset, event in enumerate(session[:5]):
        rv.fold(0, offset, mark_replay(event, "a"))
    widgets = {u.value["widget"] for u in rv.flush()}
    clock.now += 59.0
    assert rv.expire() == []
    clock.now += 1.0
    tombs = rv.expire()
    view = view_session_id("a")
    assert sorted(t.key for t in tombs) == sorted(widget_key(view, w) for w in widgets)
    assert {t.partition for t in tombs} == {widget_partition(view, 3)}
    assert len(rv) == 0 and rv.store.states == {} and rv.dropped == 1
    # The rest of that replay arrives (after a long pause): ignored, not a half-built view.
    assert rv.fold(0, 5, mark_replay(session[5], "a")).outcome == "forgotten"
    assert rv.flush() == [] and rv.expire() == []


def test_views_are_bounded_least_recently_active_dropped_first() -> None:
    session = sample_session("s", 4)
    clock = Clock()
    rv = views(clock, max_views=2)
    for i, rid in enumerate(("a", "b")):
        rv.fold(0, i, mark_replay(session[0], rid))
        clock.now += 1
    rv.fold(0, 2, mark_replay(session[1], "a"))  # a is now the most recently active
    rv.flush()
    rv.fold(0, 3, mark_replay(session[0], "c"))
    assert len(rv) == 2
    tombs = rv.expire()
    assert {t.key.rsplit(b"/", 1)[0] for t in tombs} == {view_session_id("b").encode()}
    assert rv.fold(0, 4, mark_replay(session[1], "b")).outcome == "forgotten"
    assert rv.fold(0, 5, mark_replay(session[2], "a")).outcome == "folded"


class _Dict:
    def __init__(self) -> None:
        self.d: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.d.get(key)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.d[key] = value

    def persist(self, key: str, partition: int) -> None:
        return None


def test_the_shell_skips_stale_and_undecodable_records() -> None:
    import time
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from pipeline.serde import AvroSerde
    from processors.replay_agent import ReplayMetrics, ReplayShell

    serde = AvroSerde()
    registry = CollectorRegistry()
    shell = ReplayShell(app=None, serde=serde, widgets_topic="w", views=views(Clock()),
                        metrics=ReplayMetrics(registry), max_age_s=60.0)
    event = mark_replay(sample_session("s", 2)[0], "r")

    def record(value: bytes, age_s: float, offset: int) -> Any:
        return SimpleNamespace(value=value, message=SimpleNamespace(
            timestamp=time.time() - age_s, partition=0, offset=offset))

    shell.fold(record(serde.encode_event(event), 120.0, 0))
    shell.fold(record(b"garbage", 1.0, 1))
    assert len(shell.views) == 0
    shell.fold(record(serde.encode_event(event), 1.0, 2))
    assert len(shell.views) == 1

    def count(outcome: str) -> float | None:
        return registry.get_sample_value("agentwatch_replay_records_total", {"outcome": outcome})

    assert (count("stale"), count("undecodable"), count("folded")) == (1.0, 1.0, 1.0)
