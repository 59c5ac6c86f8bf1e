"""The key layout of the archive: recordings, in-progress segments and the session index.

* ``sessions/YYYY/MM/DD/<session>.jsonl.gz``: the one recording of a session (UTC date of its
  first event);
* ``segments/<session>/p<partition>-o<offset>.jsonl.gz``: events written as they arrive, named
  by the Kafka position of the first event they hold, so rewriting a batch after a crash
  replaces the same key instead of adding a copy;
* ``index/sessions/<session>.json``: the manifest saying where a session's recording is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

RECORDINGS = "sessions/"
SEGMENTS = "segments/"
INDEX = "index/sessions/"
SUFFIX = ".jsonl.gz"

_SEGMENT_NAME = re.compile(r"^p(\d{5})-o(\d{20})\.jsonl\.gz$")


def key_component(session_id: str) -> str:
    """A session id as one safe path component (ids are UUIDs in practice, but never trusted)."""
    if not session_id:
        raise ValueError("empty session id")
    out = quote(session_id, safe="")
    # "." and ".." are path tricks on a folder target; a leading dot would also hide the file.
    return "%2E" + out[1:] if out.startswith(".") else out


def session_from_component(component: str) -> str:
    return unquote(component)


def recording_key(session_id: str, first_timestamp_us: int) -> str:
    day = datetime.fromtimestamp(first_timestamp_us / 1_000_000, tz=UTC)
    return f"{RECORDINGS}{day:%Y/%m/%d}/{key_component(session_id)}{SUFFIX}"


def segment_prefix(session_id: str) -> str:
    return f"{SEGMENTS}{key_component(session_id)}/"


def segment_key(session_id: str, partition: int, first_offset: int) -> str:
    return f"{segment_prefix(session_id)}p{partition:05d}-o{first_offset:020d}{SUFFIX}"


def manifest_key(session_id: str) -> str:
    return f"{INDEX}{key_component(session_id)}.json"


@dataclass(frozen=True, order=True)
class SegmentRef:
    """A parsed segment key; sorting these gives the Kafka order within a partition."""

    partition: int
    offset: int
    session_id: str
    key: str


def parse_segment_key(key: str) -> SegmentRef | None:
    """The parts of a segment key, or ``None`` for anything else found under ``segments/``."""
    if not key.startswith(SEGMENTS):
        return None
    rest = key[len(SEGMENTS):]
    component, _, name = rest.partition("/")
    match = _SEGMENT_NAME.match(name)
    if not component or match is None:
        return None
    return SegmentRef(int(match.group(1)), int(match.group(2)),
                      session_from_component(component), key)
