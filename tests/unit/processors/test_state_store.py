"""The aggregates' in-memory state table (processors/state_store.py): changelog format, load, drop."""

from __future__ import annotations

import json
from typing import Any

import orjson

from processors.state_store import ChangelogRecord, MemoryStore, state_key

TOPIC = "aw-widget-state-changelog"


def record(session: str, value: dict[str, Any] | None) -> tuple[bytes | None, bytes | None]:
    return state_key(session), None if value is None else orjson.dumps(value)


def test_the_key_is_the_json_encoded_session_id() -> None:
    """The Faust tables' format (processors/tables.py): state survives a switch of runtime."""
    assert state_key("s-1") == b'"s-1"'
    assert json.loads(state_key('odd "id"/\u00e9')) == 'odd "id"/\u00e9'


def test_persist_owes_a_record_of_the_state_as_it_is_now() -> None:
    store = MemoryStore(TOPIC)
    state: dict[str, Any] = {"n": 1, "part": 3}
    store.set("s1", state)
    store.persist("s1", 3)
    state["n"] = 2  # changed after the persist: the record keeps the persisted snapshot
    store.persist("s1", 3)
    assert store.take() == [ChangelogRecord(TOPIC, 3, b'"s1"', orjson.dumps({"n": 1, "part": 3})),
                            ChangelogRecord(TOPIC, 3, b'"s1"', orjson.dumps({"n": 2, "part": 3}))]
    assert store.take() == []  # taken once


def test_load_applies_the_records_in_log_order() -> None:
    store = MemoryStore(TOPIC)
    loaded = store.load([record("a", {"n": 1, "part": 0}), record("b", {"n": 1, "part": 0}),
                         record("a", {"n": 2, "part": 0})])
    assert dict(loaded) == {"a": {"n": 2, "part": 0}, "b": {"n": 1, "part": 0}}
    assert len(loaded) == 2  # one per session
    assert store.get("a") == {"n": 2, "part": 0} and len(store) == 2
    assert store.take() == []  # loading owes nothing to the changelog


def test_a_tombstone_deletes_the_session() -> None:
    store = MemoryStore(TOPIC)
    store.set("old", {"n": 9, "part": 1})
    loaded = store.load([record("a", {"n": 1, "part": 0}), record("a", None),
                         record("old", None), record("b", None), record("c", None),
                         record("c", {"n": 3, "part": 0})])
    assert dict(loaded) == {"c": {"n": 3, "part": 0}}
    assert store.get("a") is None and store.get("old") is None and store.get("b") is None
    assert store.items() == [("c", {"n": 3, "part": 0})]


def test_a_record_without_a_key_is_ignored() -> None:
    store = MemoryStore(TOPIC)
    assert store.load([(None, orjson.dumps({"n": 1})), record("a", {"n": 1, "part": 0})]) == [
        ("a", {"n": 1, "part": 0})]
    assert len(store) == 1


def test_drop_forgets_the_sessions_of_the_given_partitions_and_what_they_owe() -> None:
    store = MemoryStore(TOPIC)
    for sid, part in (("a", 0), ("b", 1), ("c", 2), ("d", 1)):
        store.set(sid, {"part": part})
        store.persist(sid, part)
    gone = store.drop({1, 2})
    assert sorted(gone) == ["b", "c", "d"]
    assert store.items() == [("a", {"part": 0})]
    assert [r.key for r in store.take()] == [b'"a"']
    assert store.drop({1}) == []


def test_drop_of_no_partition_keeps_everything() -> None:
    store = MemoryStore(TOPIC)
    store.set("a", {"part": 0})
    store.persist("a", 0)
    assert store.drop(set()) == []
    assert len(store) == 1 and len(store.take()) == 1
