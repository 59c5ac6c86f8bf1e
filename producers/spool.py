"""Durable, append-only on-disk spool: what a producer has accepted but Kafka has not yet acked.

Every accepted event is appended here before the caller hears "accepted" (one ``write()``, so a
killed process loses nothing; ``fsync`` additionally survives power loss), and a forwarder reads
the records back in order and advances a persisted cursor as Kafka acknowledges them. Files whose
records are all delivered are deleted, and the undelivered bytes are bounded: when the bound is
reached ``append`` refuses with ``SpoolFullError`` instead of dropping anything.

Layout of a spool folder: ``<segment:016d>.seg`` files, ``cursor`` (segment and offset of the
first undelivered record) and ``lock`` (flock: one process per spool). A record is
``u32 body length | u32 crc32(body) | body`` with ``body = u16 key length | u16 tag length |
key | tag | value``; the tag is a small label the owner reads back (metrics), never parsed here.
A torn record at the end of the last file (a crash mid-write) is cut off when the spool opens.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import BackpressureError, ConfigError, TransientError

log = logging.getLogger(__name__)

Position = tuple[int, int]
"""(segment number, byte offset in that segment); positions order like the records they name."""

_HEAD = struct.Struct("<II")
_BODY_HEAD = struct.Struct("<HH")
_SUFFIX = ".seg"
_CURSOR_INTERVAL_S = 0.2
_READ_CHUNK = 4 * 1024 * 1024
MAX_KEY_BYTES = 0xFFFF


class SpoolFullError(BackpressureError):
    """The spool holds its maximum of undelivered bytes; retry once Kafka has caught up."""


@dataclass(frozen=True, slots=True)
class Record:
    position: Position
    next_position: Position
    key: bytes
    tag: bytes
    value: bytes


def encode_record(key: bytes, tag: bytes, value: bytes) -> bytes:
    if len(key) > MAX_KEY_BYTES or len(tag) > MAX_KEY_BYTES:
        raise ValueError("spool keys and tags are limited to 65535 bytes")
    body = b"".join((_BODY_HEAD.pack(len(key), len(tag)), key, tag, value))
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _parse(buf: bytes | memoryview, offset: int) -> tuple[int, bytes, bytes, bytes] | None:
    """(record size, key, tag, value) of the record at ``offset``, or None if incomplete/corrupt."""
    if len(buf) - offset < _HEAD.size:
        return None
    length, crc = _HEAD.unpack_from(buf, offset)
    start = offset + _HEAD.size
    end = start + length
    if length < _BODY_HEAD.size or end > len(buf):
        return None
    body = bytes(buf[start:end])
    if zlib.crc32(body) != crc:
        return None
    klen, tlen = _BODY_HEAD.unpack_from(body, 0)
    k0 = _BODY_HEAD.size
    if k0 + klen + tlen > len(body):
        return None
    return end - offset, body[k0:k0 + klen], body[k0 + klen:k0 + klen + tlen], body[k0 + klen + tlen:]


class Spool:
    """A segmented append-only log with a delivery cursor; appends and reads are thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 16 * 1024 * 1024,
        fsync: bool = False,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ConfigError(
                f"spool {directory} is in use by another process; give each producer its own"
            ) from None
        self._sizes: dict[int, int] = {}
        self._cursor: Position = (1, 0)
        self._backlog = 0
        self._recover()
        seg, size = max(self._sizes.items()) if self._sizes else (self._cursor[0], 0)
        self._sizes.setdefault(seg, size)
        self._active = seg
        self._fd = os.open(self._path(seg), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._end: Position = (seg, size)
        self._synced: Position = self._end
        self._cursor_saved: Position = self._cursor
        self._cursor_saved_at = time.monotonic()
        self._read_handle: tuple[int, BinaryIO] | None = None
        self._closed = False

    # -- layout ----------------------------------------------------------------------------

    def _path(self, seg: int) -> Path:
        return self.directory / f"{seg:016d}{_SUFFIX}"

    def _segments_on_disk(self) -> list[int]:
        out = []
        for p in self.directory.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(ValueError):
                out.append(int(p.stem))
        return sorted(out)

    def _recover(self) -> None:
        segments = self._segments_on_disk()
        cursor = self._load_cursor()
        if cursor is None:
            cursor = (segments[0], 0) if segments else (1, 0)
        for seg in segments:
            if seg < cursor[0]:
                self._path(seg).unlink(missing_ok=True)
        segments = [s for s in segments if s >= cursor[0]]
        for seg in segments:
            data = self._path(seg).read_bytes()
            start = cursor[1] if seg == cursor[0] else 0
            start = min(start, len(data))
            good, count = self._scan(data, start)
            if good < len(data):
                # A crash mid-write leaves a torn tail; anything after a bad record is unreadable.
                log.warning("spool: cutting %d unreadable bytes off %s", len(data) - good,
                            self._path(seg).name)
                with open(self._path(seg), "r+b") as fh:
                    fh.truncate(good)
            self._sizes[seg] = good
            self._backlog += count
            if seg == cursor[0]:
                cursor = (seg, start)
        if segments and cursor[0] not in self._sizes:
            cursor = (segments[0], 0)
        self._cursor = cursor

    @staticmethod
    def _scan(data: bytes, start: int) -> tuple[int, int]:
        view = memoryview(data)
        offset, count = start, 0
        while offset < len(data):
            parsed = _parse(view, offset)
            if parsed is None:
                break
            offset += parsed[0]
            count += 1
        return offset, count

    def _load_cursor(self) -> Position | None:
        try:
            seg, off = (self.directory / "cursor").read_text().split()[:2]
            return int(seg), int(off)
        except (FileNotFoundError, ValueError):
            return None

    # -- append (producer side) ------------------------------------------------------------

    def append(self, records: Sequence[tuple[bytes, bytes, bytes]]) -> Position:
        """Append (key, tag, value) records atomically: all of them or none. Returns the end."""
        data = b"".join(encode_record(k, t, v) for k, t, v in records)
        if not data:
            return self._end
        with self._lock:
            if self._closed:
                raise TransientError("spool is closed")
            if self._undelivered_bytes() + len(data) > self.max_bytes:
                raise SpoolFullError(
                    f"spool {self.directory.name} holds {self._undelivered_bytes()} undelivered "
                    f"bytes (max {self.max_bytes})", retry_after=1.0)
            size = self._sizes[self._active]
            if size and size + len(data) > self.segment_bytes:
                self._roll()
                size = 0
            self._write_all(data, size)
            self._sizes[self._active] = size + len(data)
            self._backlog += len(records)
            self._end = (self._active, size + len(data))
            return self._end

    def _write_all(self, data: bytes, size: int) -> None:
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            # Leave no half record behind: the next append must start on a record boundary.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise TransientError(f"cannot write to spool {self.directory}: {exc}") from exc

    def _roll(self) -> None:
        if self.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._active += 1
        self._fd = os.open(self._path(self._active), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sizes[self._active] = 0

    def sync(self) -> None:
        """fsync what was appended so far; concurrent callers share one fsync (group commit)."""
        target = self._end
        with self._sync_lock:
            if self._synced >= target:
                return
            with self._lock:
                fd, end = self._fd, self._end
            # Only the active file can hold unsynced bytes: _roll fsyncs the one it closes.
            with contextlib.suppress(OSError):
                os.fsync(fd)
            self._synced = end

    def _undelivered_bytes(self) -> int:
        seg, off = self._cursor
        return sum(size for s, size in self._sizes.items() if s >= seg) - off

    # -- read and commit (forwarder side) --------------------------------------------------

    @property
    def cursor(self) -> Position:
        """Position of the first record not yet delivered."""
        return self._cursor

    @property
    def end(self) -> Position:
        return self._end

    def backlog(self) -> int:
        """Records appended and not yet committed as delivered."""
        return self._backlog

    def backlog_bytes(self) -> int:
        with self._lock:
            return self._undelivered_bytes()

    def read(self, start: Position, max_records: int) -> list[Record]:
        """Up to ``max_records`` complete records from ``start`` on (crossing files as needed)."""
        out: list[Record] = []
        seg, off = start
        while len(out) < max_records:
            with self._lock:
                end = self._end
                size = self._sizes.get(seg)
            if size is None:
                if seg >= end[0]:
                    break
                seg, off = seg + 1, 0
                continue
            limit = end[1] if seg == end[0] else size
            if off >= limit:
                if seg >= end[0]:
                    break
                seg, off = seg + 1, 0
                continue
            chunk = self._read_chunk(seg, off, min(limit - off, _READ_CHUNK))
            view = memoryview(chunk)
            pos = 0
            while pos < len(chunk) and len(out) < max_records:
                parsed = _parse(view, pos)
                if parsed is None:
                    break
                rsize, key, tag, value = parsed
                out.append(Record((seg, off + pos), (seg, off + pos + rsize), key, tag, value))
                pos += rsize
            if pos == 0:
                if len(chunk) < limit - off:
                    # One record larger than the read chunk: read exactly it.
                    (length, _crc) = _HEAD.unpack_from(chunk, 0)
                    chunk = self._read_chunk(seg, off, _HEAD.size + length)
                    parsed = _parse(chunk, 0)
                    if parsed is not None:
                        rsize, key, tag, value = parsed
                        out.append(Record((seg, off), (seg, off + rsize), key, tag, value))
                        off += rsize
                        continue
                log.error("spool: unreadable record in %s at %d; skipping the rest of the file",
                          self._path(seg).name, off)
                seg, off = seg + 1, 0
                continue
            off += pos
        return out

    def _read_chunk(self, seg: int, off: int, length: int) -> bytes:
        handle = self._read_handle
        if handle is None or handle[0] != seg:
            if handle is not None:
                handle[1].close()
            # Kept open across calls (the forwarder reads one file for a while); closed on switch.
            self._read_handle = handle = (seg, open(self._path(seg), "rb"))  # noqa: SIM115
        fh = handle[1]
        fh.seek(off)
        return fh.read(length)

    def commit(self, position: Position, count: int) -> None:
        """Everything before ``position`` (``count`` records since the last commit) is delivered."""
        with self._lock:
            if position <= self._cursor:
                return
            seg, off = position
            # A cursor at the end of a closed file moves to the start of the next one.
            if seg < self._active and off >= self._sizes.get(seg, 0):
                seg, off = seg + 1, 0
            self._cursor = (seg, off)
            self._backlog = max(0, self._backlog - count)
            done = [s for s in self._sizes if s < seg]
            for s in done:
                del self._sizes[s]
        for s in done:
            if self._read_handle is not None and self._read_handle[0] == s:
                self._read_handle[1].close()
                self._read_handle = None
            self._path(s).unlink(missing_ok=True)
        if time.monotonic() - self._cursor_saved_at >= _CURSOR_INTERVAL_S:
            self.save_cursor()

    def save_cursor(self) -> None:
        """Persist the cursor (losing it replays delivered records: duplicates, never loss)."""
        cursor = self._cursor
        if cursor == self._cursor_saved:
            self._cursor_saved_at = time.monotonic()
            return
        tmp = self.directory / "cursor.tmp"
        tmp.write_text(f"{cursor[0]} {cursor[1]}\n")
        os.replace(tmp, self.directory / "cursor")
        self._cursor_saved = cursor
        self._cursor_saved_at = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.fsync:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
            os.close(self._fd)
        if self._read_handle is not None:
            self._read_handle[1].close()
            self._read_handle = None
        self.save_cursor()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
