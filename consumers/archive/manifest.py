"""The session index: one small JSON manifest per session saying where its recording is.

A manifest object (rather than a ClickHouse row) keeps the archive self-describing: replay and
export find a recording from the target alone, even when ClickHouse is down or not used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from consumers.archive.jsonl import FORMAT_VERSION
from consumers.archive.layout import manifest_key
from consumers.archive.targets import ArchiveTarget
from pipeline.errors import DecodeError


@dataclass(frozen=True)
class Manifest:
    session_id: str
    key: str
    """The recording's key in the same target."""
    events: int
    first_timestamp: int
    last_timestamp: int
    """Microseconds since the epoch, as in the events."""
    ended: bool
    """The recording holds a session.ended event (else it was compacted after an idle timeout)."""
    compressed_bytes: int
    updated_at: int
    """When the recording was last (re)written, microseconds since the epoch."""
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw: Any = json.loads(data)
            return cls(**raw)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"unreadable session manifest: {exc}") from exc


def read_manifest(target: ArchiveTarget, session_id: str) -> Manifest | None:
    data = target.get(manifest_key(session_id))
    return None if data is None else Manifest.from_json(data)


def write_manifest(target: ArchiveTarget, manifest: Manifest) -> None:
    target.put(manifest_key(manifest.session_id), manifest.to_json())
