"""Read a session back: from the archive first (recording plus any pending segments), else from
a fallback source such as ClickHouse.

Replay and export both go through ``load_session`` so they see exactly what compaction would
write next: a session still streaming is readable before its recording exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consumers.archive.compaction import MergeStats, merge_lines, pending_segments, session_sources
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


def load_from_archive(target: ArchiveTarget, session_id: str) -> LoadedSession | None:
    manifest = read_manifest(target, session_id) or _find_recording(target, session_id)
    refs = pending_segments(target, session_id)
    if manifest is None and not refs:
        return None
    stats = MergeStats()
    events = [event for _line, event in
              merge_lines(session_sources(target, session_id, manifest, refs), stats)]
    if not events:
        return None
    where = f"{target.describe()}/{manifest.key}" if manifest else target.describe()
    return LoadedSession(session_id, events, where)


def load_session(
    target: ArchiveTarget, session_id: str, fallbacks: Sequence[EventSource] = ()
) -> LoadedSession:
    loaded = load_from_archive(target, session_id)
    if loaded is not None:
        return loaded
    for source in fallbacks:
        events = source.load(session_id)
        if events:
            return LoadedSession(session_id, events, source.name)
    raise SessionNotFoundError(f"no recording of session {session_id!r} in {target.describe()}"
                          + (f" nor in {', '.join(s.name for s in fallbacks)}" if fallbacks else ""))
