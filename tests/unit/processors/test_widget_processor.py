from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from pipeline.model import new_event
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import (
    SEQ_RESTART_GAP,
    Outgoing,
    WidgetProcessor,
    widget_key,
    widget_partition,
)

T0 = 1_700_000_000_000_000
MIN = 60_000_000
_ids = itertools.count()


class Store:
    """A table double: ``persisted`` is what a changelog would restore."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.persisted: dict[str, tuple[int, str]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value

    def persist(self, key: str, partition: int) -> None:
        self.persisted[key] = (partition, json.dumps(self.data[key]))

    def recovered(self) -> Store:
        fresh = Store()
        fresh.data = {k: json.loads(v) for k, (_p, v) in self.persisted.items()}
        fresh.persisted = dict(self.persisted)
        return fresh


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def ev(event_type: str, payload: dict[str, Any], minute: float, session: str = "s-1",
       **kw: Any) -> dict[str, Any]:
    return new_event(event_type, session, payload, timestamp_us=T0 + int(minute * MIN),
                     event_id=f"e{next(_ids)}", agent=kw.pop("agent", "main"), source="hook", **kw)


def writes(n: int, session: str = "s-1") -> list[dict[str, Any]]:
    return [ev("file.write", {"path": f"src/f{i % 7}.py", "lines_added": 1}, i / 100, session)
            for i in range(n)]


def by_widget(out: list[Outgoing]) -> dict[str, dict[str, Any]]:
    return {o.value["widget"]: o.value for o in out}


def proc(store: Store | None = None, clock: Clock | None = None, boot: str = "b1") -> WidgetProcessor:
    return WidgetProcessor(store or Store(), Coalescer(0.25, clock or Clock()), 6, boot_id=boot)


def test_a_burst_is_coalesced_into_one_update_per_widget() -> None:
    clock = Clock()
    p = proc(clock=clock)
    out: list[Outgoing] = []
    for offset, e in enumerate(writes(1000)):
        p.fold(0, offset, e)
        if offset % 100 == 0:
            out += p.flush()
    clock.t = 0.3
    out += p.flush()
    widgets = [o.value["widget"] for o in out]
    # Leading edge at the first event, trailing edge once the interval passed; the phase
    # (session_progress) changed only with the first write.
    assert widgets[:4] == ["agent_timeline", "file_heatmap", "session_progress", "session_summary"]
    assert widgets[4:] == ["agent_timeline", "file_heatmap", "session_summary"]
    last = by_widget(out[-3:])
    summary = json.loads(last["session_summary"]["data_json"])
    assert summary["events"] == 1000 and summary["counts"]["files_modified"] == 7
    assert [o.value["version"] for o in out] == list(range(1, 8))
    assert all(o.key == widget_key("s-1", o.value["widget"]) for o in out)
    assert {o.partition for o in out} == {widget_partition("s-1", 6)}
    assert last["session_summary"]["timestamp"] == T0 + int(999 / 100 * MIN)
    assert last["session_summary"]["agent"] == "main"


def test_sessions_are_partitioned_by_session_not_by_key() -> None:
    assert len({widget_partition(f"s{i}", 6) for i in range(100)}) == 6
    assert widget_partition("abc", 6) == widget_partition("abc", 6)


def test_replayed_events_after_a_crash_do_not_double_count() -> None:
    store, clock = Store(), Clock()
    p = proc(store, clock)
    events = writes(50)
    for offset, e in enumerate(events[:30]):
        p.fold(0, offset, e)
    p.flush()
    p.persist()  # state as of offset 29 reaches the changelog; say offsets committed only to 10
    restarted = proc(store.recovered(), clock, boot="b2")
    for offset, e in enumerate(events[10:], start=10):
        restarted.fold(0, offset, e)
    assert restarted.skipped == 20
    clock.t = 1.0
    out = by_widget(restarted.flush())
    assert json.loads(out["session_summary"]["data_json"])["events"] == 50


def test_a_resent_duplicate_event_is_not_counted() -> None:
    p = proc()
    e = writes(1)[0]
    assert p.fold(0, 0, e)
    assert not p.fold(0, 1, copy.deepcopy(e))
    out = by_widget(p.flush())
    assert json.loads(out["session_summary"]["data_json"])["events"] == 1


def test_sequence_survives_restart_with_a_gap_and_pending_widgets_are_resent() -> None:
    store, clock = Store(), Clock()
    p = proc(store, clock)
    for offset, e in enumerate(writes(3)):
        p.fold(0, offset, e)
    first = p.flush()
    p.persist()
    assert max(o.value["version"] for o in first) == 4
    p.fold(0, 3, ev("llm.request", {"model": "m", "cost_usd": 0.5}, 1))
    p.flush()  # cost sent (leading edge); summary/timeline wait: their interval has not passed
    p.persist()
    assert set(store.data["s-1"]["pending"]) == {"session_summary", "agent_timeline"}
    # Crash: the pending widgets were persisted, the new process sends them.
    restarted = proc(store.recovered(), Clock(), boot="b2")
    assert restarted.resume(restarted.store.data.items()) == 1  # type: ignore[attr-defined]
    out = restarted.flush()
    assert sorted(o.value["widget"] for o in out) == ["agent_timeline", "session_summary"]
    assert [o.value["version"] for o in out] == [6 + SEQ_RESTART_GAP, 7 + SEQ_RESTART_GAP]
    assert json.loads(by_widget(out)["session_summary"]["data_json"])["events"] == 4


def test_sessions_of_partitions_no_longer_owned_are_dropped() -> None:
    store = Store()
    p = proc(store)
    p.fold(0, 0, writes(1, "a")[0])
    p.fold(1, 0, writes(1, "b")[0])
    out = p.flush(owned={1})
    p.persist(owned={1})
    assert {o.value["session_id"] for o in out} == {"b"}
    assert set(store.persisted) == {"b"}


def test_main_agent_is_the_first_without_a_parent() -> None:
    p = proc()
    p.fold(0, 0, ev("llm.request", {"model": "m"}, 0, agent="sub", metadata={"parent_agent": "lead"}))
    p.fold(0, 1, ev("llm.request", {"model": "m"}, 1, agent="lead"))
    p.fold(0, 2, ev("llm.request", {"model": "m"}, 2, agent="other"))
    assert {o.value["agent"] for o in p.flush()} == {"lead"}
