from __future__ import annotations

from typing import Any

from processors.idempotence import RECENT_IDS, already_folded, remember


def test_offsets_at_or_before_the_last_folded_one_are_replays() -> None:
    st: dict[str, Any] = {}
    assert not already_folded(st, 0, 5, "a")
    remember(st, 0, 5, "a")
    assert already_folded(st, 0, 5, "a")
    assert already_folded(st, 0, 3, "older")
    assert not already_folded(st, 0, 6, "b")


def test_a_resent_event_id_at_a_new_offset_is_a_duplicate() -> None:
    st: dict[str, Any] = {}
    remember(st, 0, 5, "a")
    assert already_folded(st, 0, 9, "a")


def test_another_partition_is_judged_by_event_id_only() -> None:
    st: dict[str, Any] = {}
    remember(st, 0, 100, "a")
    assert not already_folded(st, 1, 3, "b")
    assert already_folded(st, 1, 3, "a")


def test_recent_ids_are_bounded() -> None:
    st: dict[str, Any] = {}
    for i in range(RECENT_IDS + 10):
        remember(st, 0, i, f"e{i}")
    assert len(st["recent"]) == RECENT_IDS
    assert not already_folded(st, 1, 0, "e0")
    assert already_folded(st, 1, 0, f"e{RECENT_IDS + 9}")
