"""Compaction: fold a session's segments (and its existing recording) into one recording.

Order of a recording: the existing recording first, then segments by (partition, offset), each
in Kafka order; the first line with a given event_id wins. The steps are ordered so a crash at
any point is repaired by running compaction again: write the recording, then the manifest, and
only then delete the segments that were read (segments written meanwhile stay for next time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from consumers.archive.jsonl import GzipLineWriter, iter_lines, line_head
from consumers.archive.layout import (
    SegmentRef,
    parse_segment_key,
    recording_key,
    segment_prefix,
)
from consumers.archive.manifest import Manifest, read_manifest, write_manifest
from consumers.archive.segments import SESSION_ENDED
from consumers.archive.targets import ArchiveTarget, writing


@dataclass
class MergeStats:
    events: int = 0
    duplicates: int = 0
    first_timestamp: int = 0
    last_timestamp: int = 0
    ended: bool = False


def merge_lines(
    sources: Iterable[Iterable[bytes]], stats: MergeStats | None = None
) -> Iterator[bytes]:
    """Lines of every source in turn, dropping any whose event_id was already seen."""
    stats = stats if stats is not None else MergeStats()
    seen: set[str] = set()
    for source in sources:
        for raw in source:
            line = raw if raw.endswith(b"\n") else raw + b"\n"
            event_id, event_type, ts = line_head(line)
            if event_id in seen:
                stats.duplicates += 1
                continue
            seen.add(event_id)
            if stats.events == 0:
                stats.first_timestamp = ts
            stats.events += 1
            stats.last_timestamp = max(stats.last_timestamp, ts)
            if event_type == SESSION_ENDED:
                stats.ended = True
            yield line


def pending_segments(target: ArchiveTarget, session_id: str) -> list[SegmentRef]:
    refs = (parse_segment_key(k) for k in target.list_keys(segment_prefix(session_id)))
    return sorted(r for r in refs if r is not None and r.session_id == session_id)


def _object_lines(target: ArchiveTarget, key: str) -> Iterator[bytes]:
    # Fetched only when the merge reaches it: one segment in memory at a time.
    data = target.get(key)
    if data is not None:
        yield from iter_lines(data)


def session_sources(
    target: ArchiveTarget, session_id: str, manifest: Manifest | None, refs: list[SegmentRef]
) -> list[Iterable[bytes]]:
    sources: list[Iterable[bytes]] = []
    if manifest is not None:
        sources.append(_object_lines(target, manifest.key))
    sources.extend(_object_lines(target, ref.key) for ref in refs)
    return sources


@dataclass(frozen=True)
class CompactionResult:
    session_id: str
    key: str
    events: int
    duplicates: int
    segments: int
    ended: bool
    compressed_bytes: int


class _Counting:
    """Counts the compressed bytes going into an upload."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    def write(self, data: bytes, /) -> int:
        self.count += len(data)
        return int(self.inner.write(data))

    def flush(self) -> None:
        self.inner.flush()


def compact_session(
    target: ArchiveTarget,
    session_id: str,
    *,
    level: int = 6,
    now_us: Callable[[], int] = lambda: time.time_ns() // 1000,
) -> CompactionResult | None:
    """Fold pending segments into the session's recording; ``None`` if there were none."""
    refs = pending_segments(target, session_id)
    if not refs:
        return None
    manifest = read_manifest(target, session_id)
    stats = MergeStats()
    stream = merge_lines(session_sources(target, session_id, manifest, refs), stats)
    first = next(stream, None)
    if first is None:
        target.delete(r.key for r in refs)
        return None
    # Once a recording exists its key never moves, whatever late events arrive.
    key = manifest.key if manifest is not None else recording_key(session_id, stats.first_timestamp)
    with writing(target, key) as upload:
        counting = _Counting(upload)
        with GzipLineWriter(counting, level) as gz:
            gz.write(first)
            for line in stream:
                gz.write(line)
    write_manifest(target, Manifest(
        session_id=session_id, key=key, events=stats.events,
        first_timestamp=stats.first_timestamp, last_timestamp=stats.last_timestamp,
        ended=stats.ended, compressed_bytes=counting.count, updated_at=now_us(),
    ))
    target.delete(r.key for r in refs)
    return CompactionResult(session_id, key, stats.events, stats.duplicates, len(refs),
                            stats.ended, counting.count)
