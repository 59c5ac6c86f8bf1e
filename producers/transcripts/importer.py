"""Import transcript files: read, map, publish, and account for every line.

The publisher is anything with ``publish(event)`` and ``flush(timeout) -> undelivered``
(``pipeline.sdk.EventPublisher``); events are published as they are mapped, so memory stays
flat whatever the file size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.sdk import EventPublisher
from producers.transcripts.discover import file_context, transcript_files
from producers.transcripts.lines import read_lines
from producers.transcripts.mapper import Event, FileContext, FileStats, TranscriptMapper


@dataclass(frozen=True)
class FileReport:
    path: str
    agent_id: str | None
    stats: FileStats


@dataclass
class ImportReport:
    files: list[FileReport] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    published: int = 0
    undelivered: int = 0

    def totals(self) -> dict[str, Any]:
        events: Counter[str] = Counter()
        unknown: Counter[str] = Counter()
        ignored: Counter[str] = Counter()
        sums: Counter[str] = Counter()
        for f in self.files:
            s = f.stats
            events.update(s.events)
            unknown.update(s.unknown_types)
            ignored.update(s.ignored_types)
            sums.update(lines=s.lines, bad_lines=s.bad_lines,
                        usage_lines_folded=s.usage_lines_folded,
                        unpaired_tool_uses=s.unpaired_tool_uses,
                        orphan_tool_results=s.orphan_tool_results,
                        duplicate_tool_results=s.duplicate_tool_results,
                        invalid_events=s.invalid_events)
        return {
            "files": len(self.files), "unreadable_files": len(self.unreadable),
            **{k: sums[k] for k in ("lines", "bad_lines", "usage_lines_folded",
                                    "unpaired_tool_uses", "orphan_tool_results",
                                    "duplicate_tool_results", "invalid_events")},
            "events": dict(sorted(events.items())), "events_total": sum(events.values()),
            "unknown_line_types": dict(sorted(unknown.items())),
            "ignored_line_types": dict(sorted(ignored.items())),
            "published": self.published, "undelivered": self.undelivered,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "totals": self.totals(),
            "unreadable": self.unreadable,
            "files": [
                {"path": f.path, "agent_id": f.agent_id, "lines": f.stats.lines,
                 "events": sum(f.stats.events.values()), "bad_lines": f.stats.bad_lines,
                 "bad_samples": f.stats.bad_samples,
                 "unknown_line_types": dict(f.stats.unknown_types),
                 "invalid_samples": f.stats.invalid_samples}
                for f in self.files
            ],
        }


def file_events(ctx: FileContext, mapper: TranscriptMapper) -> Iterator[Event]:
    """Every event of one file, in file order, then the end-of-file ones."""
    for line in read_lines(ctx.path):
        yield from mapper.feed(line)
    yield from mapper.finish()


class _Batcher:
    """Hands events to the publisher in batches when it can take them (``publish_many``)."""

    def __init__(self, publisher: EventPublisher, size: int) -> None:
        self._publisher = publisher
        self._many: Callable[[list[Event]], object] | None = getattr(publisher, "publish_many", None)
        self._size = size
        self._batch: list[Event] = []
        self.published = 0

    def add(self, event: Event) -> None:
        if self._many is None:
            self._publisher.publish(event)
            self.published += 1
            return
        self._batch.append(event)
        if len(self._batch) >= self._size:
            self.drain()

    def drain(self) -> None:
        if self._batch and self._many is not None:
            self._many(self._batch)
            self.published += len(self._batch)
            self._batch = []


def import_paths(
    paths: Iterable[Path],
    publisher: EventPublisher | None,
    *,
    flush_timeout: float = 60.0,
    batch_size: int = 500,
    on_file: Callable[[FileReport], None] | None = None,
) -> ImportReport:
    """Import every transcript under ``paths``; ``publisher=None`` maps and counts only."""
    report = ImportReport()
    batcher = _Batcher(publisher, batch_size) if publisher is not None else None
    for path in transcript_files(paths):
        ctx = file_context(path)
        mapper = TranscriptMapper(ctx)
        try:
            for event in file_events(ctx, mapper):
                if batcher is not None:
                    batcher.add(event)
        except OSError as exc:
            report.unreadable.append(f"{path}: {exc.strerror or exc}")
            continue
        finally:
            if batcher is not None:
                batcher.drain()
                report.published = batcher.published
        file_report = FileReport(str(path), ctx.agent_id, mapper.stats)
        report.files.append(file_report)
        if on_file is not None:
            on_file(file_report)
    if publisher is not None:
        report.undelivered = publisher.flush(flush_timeout)
    return report
