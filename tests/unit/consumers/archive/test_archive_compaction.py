"""Segments fold into one recording: ordered, deduplicated, repaired by re-running after a crash."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from consumers.archive.compaction import compact_session, pending_segments
from consumers.archive.jsonl import event_to_line, iter_events, iter_lines
from consumers.archive.layout import manifest_key, recording_key
from consumers.archive.manifest import read_manifest
from consumers.archive.recordings import SessionNotFoundError, load_session
from consumers.archive.segments import build_segments, write_segment
from consumers.archive.testing import MemoryTarget, sample_session
from pipeline.errors import TransientError

SID = "0b7d5b4e-8a43-4a55-9d1c-6c1e7f3a2b10"


def _write_batches(target: MemoryTarget, partition: int, records: Sequence[tuple[int, dict[str, Any]]],
                   size: int) -> None:
    """As the sink does: consecutive batches of ``size`` records, one segment per session each."""
    for start in range(0, len(records), size):
        for seg in build_segments(partition, records[start:start + size]):
            write_segment(target, seg)


def _recording(target: MemoryTarget, sid: str = SID) -> list[dict[str, Any]]:
    manifest = read_manifest(target, sid)
    assert manifest is not None
    data = target.get(manifest.key)
    assert data is not None
    return list(iter_events(data))


def test_interleaved_sessions_become_one_ordered_recording_each() -> None:
    a = sample_session(SID, 140)
    b = sample_session("other", 60)
    ia, ib = iter(a), iter(b)
    # Every third record is b's until b runs out: the two sessions share the partition.
    mixed = [next(ib, None) if n % 3 == 2 else None for n in range(200)]
    ordered = [e if e is not None else next(ia) for e in mixed]
    records = [(500 + n, e) for n, e in enumerate(ordered)]
    assert {e["session_id"] for e in ordered[:10]} == {SID, "other"}
    target = MemoryTarget()
    _write_batches(target, 4, records, size=17)
    assert len(pending_segments(target, SID)) > 3
    result = compact_session(target, SID)
    assert result is not None and result.ended and result.events == 140 and result.duplicates == 0
    assert result.key == recording_key(SID, a[0]["timestamp"])
    assert _recording(target) == a
    assert pending_segments(target, SID) == []
    # The other session's segments are untouched until it is compacted itself.
    assert pending_segments(target, "other")
    compact_session(target, "other")
    assert _recording(target, "other") == b


def test_manifest_says_where_and_what() -> None:
    events = sample_session(SID, 10)
    target = MemoryTarget()
    _write_batches(target, 0, list(enumerate(events)), size=4)
    compact_session(target, SID, now_us=lambda: 42)
    manifest = read_manifest(target, SID)
    assert manifest is not None
    assert manifest.key.startswith("sessions/2026/01/01/")
    assert (manifest.events, manifest.ended, manifest.updated_at) == (10, True, 42)
    assert (manifest.first_timestamp, manifest.last_timestamp) == (
        events[0]["timestamp"], events[-1]["timestamp"])
    assert manifest.compressed_bytes == len(target.objects[manifest.key])


def test_rewritten_batch_after_a_crash_overwrites_its_segment() -> None:
    events = sample_session(SID, 60)
    records = [(1000 + i, e) for i, e in enumerate(events)]
    target = MemoryTarget()
    # Before the crash: batch [0, 25) written, [25, 50) written but its offsets never committed.
    _write_batches(target, 2, records[:50], size=25)
    before = set(target.objects)
    # After the restart the batch is re-read from offset 25 with other bounds.
    _write_batches(target, 2, records[25:], size=10)
    assert before <= set(target.objects)
    result = compact_session(target, SID)
    assert result is not None
    assert _recording(target) == events


def test_duplicates_in_the_stream_are_dropped_by_event_id() -> None:
    events = sample_session(SID, 30)
    # A producer retry re-sent events 5..9 further down the topic.
    records = list(enumerate(events[:20] + events[5:10] + events[20:]))
    target = MemoryTarget()
    _write_batches(target, 0, records, size=7)
    result = compact_session(target, SID)
    assert result is not None and result.duplicates == 5 and result.events == 30
    assert _recording(target) == events


@pytest.mark.parametrize("crash_at", ["manifest", "delete"])
def test_crash_inside_compaction_is_repaired_by_running_it_again(crash_at: str) -> None:
    events = sample_session(SID, 40)
    target = MemoryTarget()
    _write_batches(target, 0, list(enumerate(events)), size=9)

    class CrashError(Exception):
        pass

    original_put, original_delete = target.put, target.delete

    def put(key: str, data: bytes) -> None:
        if crash_at == "manifest" and key == manifest_key(SID):
            raise CrashError
        original_put(key, data)

    def delete(keys: Any) -> None:
        raise CrashError

    target.put = put  # type: ignore[method-assign]
    if crash_at == "delete":
        target.delete = delete  # type: ignore[method-assign]
    with pytest.raises(CrashError):
        compact_session(target, SID)
    target.put, target.delete = original_put, original_delete  # type: ignore[method-assign]
    assert pending_segments(target, SID)
    result = compact_session(target, SID)
    assert result is not None and result.events == 40
    assert _recording(target) == events
    assert pending_segments(target, SID) == []
    assert len([k for k in target.objects if k.startswith("sessions/")]) == 1


def test_late_events_are_appended_to_the_same_recording() -> None:
    events = sample_session(SID, 30)
    target = MemoryTarget()
    _write_batches(target, 1, list(enumerate(events[:20])), size=8)
    first = compact_session(target, SID)
    assert first is not None and not first.ended
    # A late event stamped before the first one must not move the recording to another day.
    late = dict(events[25])
    late["timestamp"] = events[0]["timestamp"] - 86_400_000_000
    _write_batches(target, 1, [(20 + i, e) for i, e in enumerate(events[20:])] + [(99, late)], size=8)
    second = compact_session(target, SID)
    assert second is not None and second.key == first.key and second.ended
    assert second.duplicates == 1  # `late` shares event 25's id
    assert _recording(target) == events


def test_compaction_without_segments_does_nothing() -> None:
    target = MemoryTarget()
    assert compact_session(target, SID) is None
    assert target.objects == {}


def test_failed_write_keeps_the_segments() -> None:
    events = sample_session(SID, 12)
    target = MemoryTarget()
    _write_batches(target, 0, list(enumerate(events)), size=5)
    target.fail_puts = True
    with pytest.raises(TransientError):
        compact_session(target, SID)
    target.fail_puts = False
    assert len(pending_segments(target, SID)) == 3
    assert compact_session(target, SID) is not None
    assert _recording(target) == events


def test_load_session_reads_recording_plus_pending_segments() -> None:
    events = sample_session(SID, 50)
    target = MemoryTarget()
    _write_batches(target, 0, list(enumerate(events[:30])), size=10)
    compact_session(target, SID)
    _write_batches(target, 0, [(30 + i, e) for i, e in enumerate(events[30:])], size=10)
    loaded = load_session(target, SID)
    assert loaded.events == events
    assert loaded.source.startswith("memory:///sessions/")


def test_load_session_finds_a_recording_without_manifest_and_uses_fallbacks() -> None:
    events = sample_session(SID, 20)
    target = MemoryTarget()
    _write_batches(target, 0, list(enumerate(events)), size=10)
    compact_session(target, SID)
    del target.objects[manifest_key(SID)]
    assert load_session(target, SID).events == events

    class Fallback:
        name = "clickhouse"

        def load(self, session_id: str) -> list[dict[str, Any]] | None:
            return events if session_id == "elsewhere" else None

    assert load_session(target, "elsewhere", [Fallback()]).source == "clickhouse"
    with pytest.raises(SessionNotFoundError):
        load_session(target, "nowhere", [Fallback()])


def test_recording_lines_are_the_segment_lines_verbatim() -> None:
    events = sample_session(SID, 15)
    target = MemoryTarget()
    _write_batches(target, 0, list(enumerate(events)), size=4)
    result = compact_session(target, SID)
    assert result is not None
    assert list(iter_lines(target.objects[result.key])) == [event_to_line(e) for e in events]


def test_open_session_reads_lazily_so_replay_starts_early() -> None:
    from consumers.archive.recordings import open_session

    events = sample_session(SID, 40)

    class CountingTarget(MemoryTarget):
        def __init__(self) -> None:
            super().__init__()
            self.gets: list[str] = []

        def get(self, key: str) -> bytes | None:
            self.gets.append(key)
            return super().get(key)

    target = CountingTarget()
    _write_batches(target, 0, list(enumerate(events[:30])), size=10)
    compact_session(target, SID)
    _write_batches(target, 0, [(30 + i, e) for i, e in enumerate(events[30:])], size=5)
    target.gets.clear()
    stream = open_session(target, SID)
    assert stream.first_timestamp == events[0]["timestamp"]
    assert not any(k.startswith("segments/") for k in target.gets)  # only manifest + recording
    assert list(stream) == events
    assert sum(k.startswith("segments/") for k in target.gets) == 2
