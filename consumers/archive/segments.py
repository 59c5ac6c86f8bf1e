"""Turn one partition's batch of events into segment objects, one per session.

A segment is named by the partition and the offset of the session's first event in the batch
(``layout.segment_key``). Batches start at the committed offset, so after a crash the same
session's first event in the re-read batch has the same offset and its segment overwrites the
old one; compaction dedupes by event_id for whatever overlap remains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consumers.archive.jsonl import event_to_line, gzip_bytes
from consumers.archive.layout import segment_key
from consumers.archive.targets import ArchiveTarget
from pipeline.errors import DecodeError, ItemError

SESSION_ENDED = "session.ended"


@dataclass
class Segment:
    session_id: str
    partition: int
    first_offset: int
    last_offset: int
    lines: list[bytes] = field(default_factory=list)
    ended: bool = False
    """Holds a session.ended event: the sink compacts the session right after writing it."""

    @property
    def key(self) -> str:
        return segment_key(self.session_id, self.partition, self.first_offset)

    @property
    def raw_bytes(self) -> int:
        return sum(len(line) for line in self.lines)


OnBadEvent = Callable[[int, ItemError], None]
"""Told the offset and the error of an event that cannot be rendered (the sink dead-letters it)."""


def build_segments(
    partition: int,
    records: Iterable[tuple[int, Mapping[str, Any]]],
    on_bad: OnBadEvent | None = None,
) -> list[Segment]:
    """Group ``(offset, event)`` pairs of one partition, in offset order, by session.

    An event that cannot be rendered raises, or goes to ``on_bad`` and is left out.
    """
    by_session: dict[str, Segment] = {}
    for offset, event in records:
        try:
            sid = str(event["session_id"])
            line = event_to_line(event)
        except ItemError as exc:
            if on_bad is None:
                raise
            on_bad(offset, exc)
            continue
        except KeyError as exc:
            missing = DecodeError(f"event without {exc}")
            if on_bad is None:
                raise missing from exc
            on_bad(offset, missing)
            continue
        seg = by_session.get(sid)
        if seg is None:
            seg = by_session[sid] = Segment(sid, partition, offset, offset)
        seg.lines.append(line)
        seg.last_offset = offset
        if event.get("event_type") == SESSION_ENDED:
            seg.ended = True
    return list(by_session.values())


def write_segment(target: ArchiveTarget, segment: Segment, level: int = 6) -> int:
    """Write one segment durably; returns its compressed size."""
    data = gzip_bytes(segment.lines, level)
    target.put(segment.key, data)
    return len(data)
