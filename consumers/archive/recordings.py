"""Read a session back: from the archive first (recording plus any pending segments), else from
a fallback source such as ClickHouse.

Replay and export both go through ``load_session`` so they see exactly what compaction would
write next: a session still streaming is readable before its recording exists.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consumers.archive.compaction import MergeStats, merge_lines, pending_segments, session_sources
from consumers.archive.jsonl import event_from_line
from consumers.archive.layout import RECORDINGS, SUFFIX, key_component
from consumers.archive.manifest import Manifest, read_manifest
from consumers.archive.targets import ArchiveTarget
from pipeline.errors import AgentwatchError


class SessionNotFoundError(AgentwatchError):
    """No source holds any event of the session."""


@dataclass(frozen=True)
class LoadedSession:
    session_id: str
    events: list[dict[str, Any]]
    source: str
    """Where the events came from: the recording's URL, or the fallback's name."""


class EventSource(Protocol):
    """Somewhere else a session's events can be read from when the archive has none."""

    name: str

    def load(self, session_id: str) -> list[dict[str, Any]] | None: ...


def _find_recording(target: ArchiveTarget, session_id: str) -> Manifest | None:
    # Without a manifest (written by an older sink, or lost): scan the recordings. Slow on a
    # big archive, which is why the manifest exists.
    suffix = f"/{key_component(session_id)}{SUFFIX}"
    for key in target.list_keys(RECORDINGS):
        if key.endswith(suffix):
            return Manifest(session_id, key, 0, 0, 0, False, 0, 0)
    return None


class SessionStream:
    """A session's events, read lazily: iterating parses the recording as it goes, so a replay
    can start before a long recording is read to its end. Iterate once."""

    def __init__(self, session_id: str, source: str, events: Iterator[dict[str, Any]]) -> None:
        first = next(events, None)
        if first is None:
            raise SessionNotFoundError(f"session {session_id!r} has an empty recording in {source}")
        self.session_id = session_id
        self.source = source
        self.first_timestamp = int(first["timestamp"])
        self._events = itertools.chain([first], events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._events


def _archive_stream(target: ArchiveTarget, session_id: str) -> SessionStream | None:
    manifest = read_manifest(target, session_id) or _find_recording(target, session_id)
    refs = pending_segments(target, session_id)
    if manifest is None and not refs:
        return None
    lines = merge_lines(session_sources(target, session_id, manifest, refs), MergeStats())
    where = f"{target.describe()}/{manifest.key}" if manifest else target.describe()
    try:
        return SessionStream(session_id, where, (event_from_line(line) for line in lines))
    except SessionNotFoundError:
        return None


def open_session(
    target: ArchiveTarget, session_id: str, fallbacks: Sequence[EventSource] = ()
) -> SessionStream:
    """The archive's recording (plus pending segments) first, then each fallback in turn."""
    stream = _archive_stream(target, session_id)
    if stream is not None:
        return stream
    for source in fallbacks:
        events = source.load(session_id)
        if events:
            return SessionStream(session_id, source.name, iter(events))
    raise SessionNotFoundError(f"no recording of session {session_id!r} in {target.describe()}"
                               + (f" nor in {', '.join(s.name for s in fallbacks)}" if fallbacks
                                  else ""))


def load_session(
    target: ArchiveTarget, session_id: str, fallbacks: Sequence[EventSource] = ()
) -> LoadedSession:
    stream = open_session(target, session_id, fallbacks)
    return LoadedSession(session_id, list(stream), stream.source)
