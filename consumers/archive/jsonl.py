"""The JSON-lines rendering of events in recordings, and gzip framing of line streams.

One event is one line: the envelope's fields under their own names, ``payload_type`` holding the
payload's full record name and ``payload`` its fields, so ``jq '.payload.path'`` works and
``event_from_line(event_to_line(e)) == e`` for every decoded event (docs/archive.md).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, Protocol

from pipeline.errors import DecodeError

PAYLOAD_TYPE = "payload_type"
FORMAT_VERSION = 1
"""Bumped if the line rendering ever changes; written into manifests."""

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True)
_DECODER = json.JSONDecoder()


def event_to_line(event: Mapping[str, Any]) -> bytes:
    """One UTF-8 JSON line (with its newline) for an in-memory event dict."""
    payload = event["payload"]
    if not (isinstance(payload, tuple) and len(payload) == 2):
        raise DecodeError(f"event {event.get('event_id')!r} has no (record name, dict) payload")
    doc: dict[str, Any] = dict(event)
    del doc["payload"]  # re-added last, after its type, whatever the dict's order was
    doc[PAYLOAD_TYPE] = payload[0]
    doc["payload"] = payload[1]
    return (_ENCODER.encode(doc) + "\n").encode("utf-8")


# What event_to_line writes for a decoded event: the schema's first three fields, in order.
_HEAD = re.compile(rb'^\{"event_id":"([^"\\]*)","event_type":"([^"\\]*)","timestamp":(-?\d+)[,}]')


def line_head(line: bytes) -> tuple[str, str, int]:
    """(event_id, event_type, timestamp) of a line without parsing all of it when it can.

    Compaction needs only these three; lines written by ``event_to_line`` from a decoded event
    start with them, anything else falls back to a full parse.
    """
    match = _HEAD.match(line)
    if match is not None:
        return match.group(1).decode(), match.group(2).decode(), int(match.group(3))
    event = event_from_line(line)
    return str(event.get("event_id")), str(event.get("event_type")), int(event.get("timestamp", 0))


def event_from_line(line: bytes | str) -> dict[str, Any]:
    """The in-memory event dict of one line; ``DecodeError`` for anything else."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        doc = _DECODER.decode(text.strip())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"recording line is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise DecodeError("recording line is not a JSON object")
    name = doc.pop(PAYLOAD_TYPE, None)
    body = doc.get("payload")
    if not isinstance(name, str) or not isinstance(body, dict):
        raise DecodeError(f"recording line has no {PAYLOAD_TYPE} and payload object")
    doc["payload"] = (name, body)
    return doc


def gzip_bytes(lines: Iterable[bytes], level: int = 6) -> bytes:
    """Lines concatenated and gzip-compressed in one member."""
    buf = io.BytesIO()
    with GzipLineWriter(buf, level) as writer:
        for line in lines:
            writer.write(line)
    return buf.getvalue()


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class GzipLineWriter:
    """Streams lines into gzip on top of any binary sink (an object upload, a file)."""

    _CHUNK = 64 * 1024

    def __init__(self, sink: Writable, level: int = 6) -> None:
        self._gz = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=level, mtime=0)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.lines = 0
        self.raw_bytes = 0

    def write(self, line: bytes) -> None:
        # One compress call per line costs more than the compression itself for ~500-byte
        # lines (Python 3.11's GzipFile has no write buffer): hand zlib 64 KiB at a time.
        self._pending.append(line)
        self._pending_bytes += len(line)
        self.lines += 1
        self.raw_bytes += len(line)
        if self._pending_bytes >= self._CHUNK:
            self._drain()

    def _drain(self) -> None:
        if self._pending:
            self._gz.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0

    def close(self) -> None:
        self._drain()
        self._gz.close()

    def __enter__(self) -> GzipLineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_lines(data: bytes | BinaryIO) -> Iterator[bytes]:
    """Non-empty lines of a gzip stream; a truncated or corrupt stream is a ``DecodeError``."""
    fileobj = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with gzip.GzipFile(fileobj=fileobj, mode="rb") as gz:
            for line in gz:
                if line.strip():
                    yield line
    except (OSError, EOFError, zlib.error) as exc:
        raise DecodeError(f"recording is not a complete gzip stream: {exc}") from exc


def iter_events(data: bytes | BinaryIO) -> Iterator[dict[str, Any]]:
    for line in iter_lines(data):
        yield event_from_line(line)
