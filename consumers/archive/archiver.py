"""The archive's ``pipeline.sinks.Sink``: batches in, segments and recordings out. No Kafka here.

``write`` stores one segment per session and partition of the batch, then compacts the sessions
whose session.ended it just stored, and returns; the consume loop commits offsets only after
that, so a crash anywhere re-delivers the batch and the same keys are written again. Sessions
that never end are compacted by ``compact_idle`` (called on a timer) after the idle timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from consumers.archive.compaction import CompactionResult, compact_session
from consumers.archive.layout import SEGMENTS, parse_segment_key
from consumers.archive.segments import Segment, build_segments, write_segment
from consumers.archive.targets import ArchiveTarget
from pipeline.errors import ItemError
from pipeline.sinks import Batch, Record, RejectFn, TopicPartition

log = logging.getLogger(__name__)

SEGMENT_LEVEL = 1
"""Segments live until compaction: the fastest gzip level (~20% larger than level 6)."""


class ArchiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.segments = Counter("agentwatch_archive_segments_written_total",
                                "Segment objects written", registry=registry)
        self.segment_bytes = Counter("agentwatch_archive_segment_bytes_total",
                                     "Compressed bytes of segments written", registry=registry)
        self.events = Counter("agentwatch_archive_events_written_total",
                              "Events written into segments (before deduplication)",
                              registry=registry)
        self.compactions = Counter("agentwatch_archive_compactions_total",
                                   "Recordings (re)written", ["reason"], registry=registry)
        self.compaction_failures = Counter("agentwatch_archive_compaction_failures_total",
                                           "Compactions that failed (retried later)", ["reason"],
                                           registry=registry)
        self.duplicates = Counter("agentwatch_archive_duplicates_dropped_total",
                                  "Lines dropped by event_id during compaction", registry=registry)
        self.open_sessions = Gauge("agentwatch_archive_open_sessions",
                                   "Sessions with segments not yet compacted", registry=registry)


@dataclass
class _Open:
    partition: int
    seen_at: float


class SessionTracker:
    """Sessions with pending segments and when the sink last saw them (monotonic seconds)."""

    def __init__(self) -> None:
        self._open: dict[str, _Open] = {}

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._open

    def touch(self, session_id: str, partition: int, now: float) -> None:
        self._open[session_id] = _Open(partition, now)

    def seen_at(self, session_id: str) -> float | None:
        entry = self._open.get(session_id)
        return None if entry is None else entry.seen_at

    def idle(self, now: float, timeout_s: float) -> list[str]:
        return sorted(sid for sid, e in self._open.items() if now - e.seen_at >= timeout_s)

    def forget(self, session_id: str, seen_at: float | None = None) -> None:
        """Drop a session; with ``seen_at``, only if it was not touched again since."""
        entry = self._open.get(session_id)
        if entry is not None and (seen_at is None or entry.seen_at == seen_at):
            del self._open[session_id]

    def drop_partitions(self, partitions: set[int]) -> None:
        for sid in [s for s, e in self._open.items() if e.partition in partitions]:
            del self._open[sid]


@dataclass
class _LockEntry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class ArchiveSink:
    """Thread-safe between the consume loop's ``write`` and the timer's ``compact_idle``."""

    def __init__(
        self,
        target: ArchiveTarget,
        metrics: ArchiveMetrics,
        *,
        level: int = 6,
        idle_timeout_s: float = 1800.0,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._m = metrics
        self._level = level
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="archive-io")
        self._tracker = SessionTracker()
        self._owned: set[int] = set()
        self._mutex = threading.Lock()
        self._session_locks: dict[str, _LockEntry] = {}
        self.last_error: str | None = None

    # -- Sink protocol -----------------------------------------------------------------------

    def write(self, batch: Batch[dict[str, Any]], reject: RejectFn) -> None:
        segments: list[Segment] = []
        for tp, records in batch.partitions.items():

            def on_bad(offset: int, exc: ItemError,
                       recs: Sequence[Record[dict[str, Any]]] = records) -> None:
                reject(next(r for r in recs if r.offset == offset), exc)

            segments.extend(build_segments(
                tp.partition, ((r.offset, r.value) for r in records), on_bad))
        self._adopt_orphans({tp.partition for tp in batch.partitions})
        # Every segment durable before anything else: a failure here raises and the loop
        # retries the whole batch (same keys), so nothing half-written is ever committed.
        sizes = list(self._pool.map(lambda s: write_segment(self.target, s, SEGMENT_LEVEL), segments))
        self._m.segments.inc(len(segments))
        self._m.segment_bytes.inc(sum(sizes))
        self._m.events.inc(sum(len(s.lines) for s in segments))
        now = self._clock()
        with self._mutex:
            for seg in segments:
                self._tracker.touch(seg.session_id, seg.partition, now)
        ended = [s.session_id for s in segments if s.ended]
        if ended:
            # Compacting before returning ties the recording to the commit: if it fails, the
            # batch (with its session.ended) comes back and compaction runs again.
            list(self._pool.map(lambda sid: self._compact(sid, "ended", raise_errors=True), ended))
        self._m.open_sessions.set(len(self._tracker))

    def revoke(self, partitions: Sequence[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        with self._mutex:
            self._tracker.drop_partitions(gone)
            self._owned -= gone
        self._m.open_sessions.set(len(self._tracker))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- idle sessions -----------------------------------------------------------------------

    def compact_idle(self) -> list[CompactionResult]:
        """Compact every session idle for longer than the timeout; failures are retried later."""
        with self._mutex:
            idle = self._tracker.idle(self._clock(), self._idle_timeout_s)
        done = []
        for sid in idle:
            result = self._compact(sid, "idle", raise_errors=False)
            if result is not None:
                done.append(result)
        self._m.open_sessions.set(len(self._tracker))
        return done

    def open_sessions(self) -> list[str]:
        with self._mutex:
            return self._tracker.idle(float("inf"), 0.0)

    def _adopt_orphans(self, partitions: set[int]) -> None:
        """Track sessions left with segments by an earlier run, once per newly owned partition.

        Only partitions this instance consumes: each session is compacted by the one instance
        that owns its partition, never by two at once.
        """
        with self._mutex:
            new = partitions - self._owned
            self._owned |= new
        if not new:
            return
        refs = [r for r in map(parse_segment_key, self.target.list_keys(SEGMENTS))
                if r is not None and r.partition in new]
        now = self._clock()
        with self._mutex:
            for ref in refs:
                if ref.session_id not in self._tracker:
                    self._tracker.touch(ref.session_id, ref.partition, now)
        if refs:
            log.info("adopted sessions with pending segments",
                     extra={"sessions": len({r.session_id for r in refs}),
                            "partitions": sorted(new)})

    @contextmanager
    def _session_lock(self, session_id: str) -> Iterator[None]:
        """One compaction per session at a time; entries live only while someone holds or
        waits for them."""
        with self._mutex:
            entry = self._session_locks.setdefault(session_id, _LockEntry())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._mutex:
                entry.users -= 1
                if entry.users == 0:
                    del self._session_locks[session_id]

    def _compact(self, session_id: str, reason: str, *, raise_errors: bool) -> CompactionResult | None:
        with self._session_lock(session_id):
            with self._mutex:
                seen_at = self._tracker.seen_at(session_id)
            try:
                result = compact_session(self.target, session_id, level=self._level)
            except Exception as exc:
                self._m.compaction_failures.labels(reason=reason).inc()
                self.last_error = f"compaction of {session_id}: {type(exc).__name__}: {exc}"
                # An unreadable segment (ItemError) would fail every retry of the batch and stall
                # the whole archive: its segments stay (nothing is lost) and the idle timer
                # tries again; target failures do hold the batch back.
                if raise_errors and not isinstance(exc, ItemError):
                    raise
                log.log(logging.ERROR if isinstance(exc, ItemError) else logging.WARNING,
                        "compaction failed; segments kept, retried later",
                        extra={"session_id": session_id, "error": self.last_error,
                               "retriable": getattr(exc, "retriable", False)})
                return None
            with self._mutex:
                self._tracker.forget(session_id, seen_at)
        if result is not None:
            self._m.compactions.labels(reason=reason).inc()
            self._m.duplicates.inc(result.duplicates)
            log.info("session recorded", extra={
                "session_id": session_id, "key": result.key, "events": result.events,
                "segments": result.segments, "reason": reason})
        return result

    def health(self) -> dict[str, Any]:
        return {
            "archive_target": self.target.describe(),
            "open_sessions": len(self._tracker),
            "last_archive_error": self.last_error,
        }
