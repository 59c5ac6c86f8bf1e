from __future__ import annotations

import pytest

from consumers.archive.layout import (
    key_component,
    manifest_key,
    parse_segment_key,
    recording_key,
    segment_key,
    session_from_component,
)


def test_recording_key_uses_the_utc_day_of_the_first_event() -> None:
    # 2026-01-01T23:59:59.999999Z
    assert recording_key("abc", 1_767_311_999_999_999) == "sessions/2026/01/01/abc.jsonl.gz"
    assert recording_key("abc", 1_767_312_000_000_000) == "sessions/2026/01/02/abc.jsonl.gz"


def test_segment_keys_sort_in_kafka_order_and_parse_back() -> None:
    keys = [segment_key("s", 3, 1000), segment_key("s", 3, 99), segment_key("s", 3, 100)]
    refs = sorted(parse_segment_key(k) for k in keys)  # type: ignore[type-var]
    assert [r.offset for r in refs if r] == [99, 100, 1000]
    assert sorted(keys) == [r.key for r in refs if r]
    ref = parse_segment_key(segment_key("sess/with slash", 12, 7))
    assert ref is not None and (ref.session_id, ref.partition, ref.offset) == ("sess/with slash", 12, 7)


@pytest.mark.parametrize("sid", ["..", ".", ".hidden", "a/b", "a b%", "ü", "0b7d5b4e-8a43"])
def test_session_ids_become_one_safe_component(sid: str) -> None:
    comp = key_component(sid)
    assert "/" not in comp and not comp.startswith(".")
    assert session_from_component(comp) == sid
    assert manifest_key(sid).count("/") == 2


def test_foreign_keys_under_segments_are_ignored() -> None:
    assert parse_segment_key("segments/s/notes.txt") is None
    assert parse_segment_key("sessions/2026/01/01/s.jsonl.gz") is None


def test_empty_session_id_is_refused() -> None:
    with pytest.raises(ValueError):
        key_component("")
