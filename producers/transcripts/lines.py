"""Reading transcript files: one JSON object per line, streamed, never the whole file in memory.

Transcripts of long sessions pass 500 MB, are appended to while Claude Code runs (the last line
may be half written), and gain new line types with every Claude Code release; reading is
therefore lenient: a line that is not a JSON object is reported, not fatal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Line:
    """A parsed line, or the reason it could not be parsed (``record`` is then ``None``)."""

    number: int
    record: dict[str, Any] | None
    error: str | None = None


def read_lines(path: Path) -> Iterator[Line]:
    """Each non-blank line of ``path`` as a ``Line``; binary reads keep memory to one line."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            yield parse_line(number, raw)


def parse_line(number: int, raw: bytes | str) -> Line:
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return Line(number, None, f"invalid JSON: {type(exc).__name__}")
    if not isinstance(record, dict):
        return Line(number, None, f"not a JSON object but {type(record).__name__}")
    if not isinstance(record.get("type"), str):
        return Line(number, None, "no string 'type' field")
    return Line(number, record)


def parse_timestamp(value: Any) -> int | None:
    """ISO 8601 (``2026-03-27T10:07:35.130Z``) to int microseconds; ``None`` if unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // _MICROSECOND
