"""ArchiveSink under the real batching loop with in-memory Kafka: crashes, restarts, idle ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumers.archive.archiver import ArchiveMetrics, ArchiveSink, SessionTracker
from consumers.archive.compaction import pending_segments
from consumers.archive.jsonl import iter_events
from consumers.archive.manifest import read_manifest
from consumers.archive.segments import build_segments, write_segment
from consumers.archive.testing import MemoryTarget, sample_session
from consumers.base import BatchingConfig, BatchingConsumer, BatchingMetrics
from pipeline.errors import DecodeError, ItemError
from pipeline.retry import RetryPolicy
from pipeline.serde import AvroSerde
from pipeline.sinks import Batch, Record, TopicPartition
from pipeline.testing import FakeConsumer, InMemoryDeadLetters

TOPIC = "events"
SERDE = AvroSerde()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StopWhen(threading.Event):
    """Stops the loop once ``predicate`` holds; each check ticks the fake clock."""

    def __init__(self, predicate: Callable[[], bool], clock: Clock, max_steps: int = 5000) -> None:
        super().__init__()
        self.predicate, self.clock, self.steps, self.max_steps = predicate, clock, 0, max_steps

    def is_set(self) -> bool:
        self.steps += 1
        self.clock.now += 0.1
        if self.steps > self.max_steps:
            raise AssertionError("loop did not reach the expected state")
        return self.predicate() or super().is_set()


class CrashError(BaseException):
    """The process dies: after a write, before the loop could commit."""


class CrashingSink(ArchiveSink):
    def __init__(self, *args: Any, crash_on_write: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes = 0
        self.crash_on_write = crash_on_write

    def write(self, batch: Batch[dict[str, Any]], reject: Any) -> None:
        super().write(batch, reject)
        self.writes += 1
        if self.writes == self.crash_on_write:
            raise CrashError


def produce(consumer: FakeConsumer, events: list[dict[str, Any]], partitions: int = 1) -> None:
    for event in events:
        partition = sum(event["session_id"].encode()) % partitions
        consumer.produce(TOPIC, partition, SERDE.encode_event(event), event["session_id"].encode())


def restarted(old: FakeConsumer) -> FakeConsumer:
    """A new process: same topic logs and committed offsets, nothing else."""
    new = FakeConsumer()
    new.logs = old.logs
    new.committed = dict(old.committed)
    return new


def end_offsets(consumer: FakeConsumer) -> dict[TopicPartition, int]:
    return {tp: len(p.log) for tp, p in consumer.logs.items()}


def run_sink(consumer: FakeConsumer, target: MemoryTarget, clock: Clock, *,
             until: Callable[[], bool], crash_on_write: int | None = None,
             max_records: int = 25) -> CrashingSink:
    sink = CrashingSink(target, ArchiveMetrics(CollectorRegistry()), idle_timeout_s=60.0,
                        concurrency=2, clock=clock, crash_on_write=crash_on_write)
    loop = BatchingConsumer(
        name="archive", consumer=consumer, topics=[TOPIC], deserialize=SERDE.decode_event,
        sink=sink, dead_letters=InMemoryDeadLetters(), metrics=BatchingMetrics(CollectorRegistry()),
        config=BatchingConfig(max_records=max_records, max_age_s=1.0, shutdown_flush_timeout_s=5.0,
                              consume_max=10,
                              retry=RetryPolicy(initial_s=0.1, max_s=0.5, max_attempts=None)),
        clock=clock)
    stop = StopWhen(until, clock)
    if crash_on_write is None:
        loop.run(stop)
    else:
        with pytest.raises(CrashError):
            loop.run(stop)
    return sink


def recording(target: MemoryTarget, sid: str) -> list[dict[str, Any]]:
    manifest = read_manifest(target, sid)
    assert manifest is not None
    data = target.get(manifest.key)
    assert data is not None
    return list(iter_events(data))


def test_long_session_with_three_crashes_ends_as_one_exact_recording() -> None:
    session = sample_session("long-one", 400)
    others = [sample_session(f"other-{i}", 60, ended=False) for i in range(3)]
    mixed: list[dict[str, Any]] = []
    for i, event in enumerate(session):
        mixed.append(event)
        if i % 4 == 0 and i // 4 < 60:
            mixed.extend(o[i // 4] for o in others)
    target, clock = MemoryTarget(), Clock()
    consumer = FakeConsumer({TOPIC: 2})
    produce(consumer, mixed, partitions=2)
    # Three crashes right after a write, each before its commit: the batch comes back.
    for crash_at in (2, 3, 1):
        run_sink(consumer, target, clock, until=lambda: False, crash_on_write=crash_at)
        consumer = restarted(consumer)
    done = end_offsets(consumer)
    run_sink(consumer, target, clock, until=lambda: consumer.committed == done)
    assert recording(target, "long-one") == session
    assert pending_segments(target, "long-one") == []
    assert len([k for k in target.objects if k.startswith("sessions/")]) == 1
    # The others never ended: still segments, nothing lost.
    for other in others:
        assert read_manifest(target, other[0]["session_id"]) is None
        assert pending_segments(target, other[0]["session_id"])


def test_idle_session_is_compacted_after_the_timeout_and_late_events_reopen_it() -> None:
    events = sample_session("quiet", 30, ended=False)
    target, clock = MemoryTarget(), Clock()
    sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()), idle_timeout_s=60.0, clock=clock)
    sink.write(_batch(0, events[:10]), _no_reject)
    clock.now += 30
    sink.write(_batch(0, events[10:20], first_offset=10), _no_reject)
    assert sink.open_sessions() == ["quiet"]
    clock.now += 59
    assert sink.compact_idle() == []  # idle 59 s since the last event: not yet
    clock.now += 1
    [result] = sink.compact_idle()
    assert result.events == 20 and not result.ended
    assert sink.open_sessions() == []
    assert recording(target, "quiet") == events[:20]
    sink.write(_batch(0, events[20:], first_offset=20), _no_reject)
    assert sink.open_sessions() == ["quiet"]
    clock.now += 60
    assert len(sink.compact_idle()) == 1
    assert recording(target, "quiet") == events


def test_restart_adopts_sessions_left_with_segments_on_its_partitions() -> None:
    target, clock = MemoryTarget(), Clock()
    orphan = sample_session("orphan", 10, ended=False)
    elsewhere = sample_session("elsewhere", 10, ended=False)
    for seg in build_segments(0, enumerate(orphan)):
        write_segment(target, seg)
    for seg in build_segments(5, enumerate(elsewhere)):
        write_segment(target, seg)
    sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()), idle_timeout_s=60.0, clock=clock)
    live = sample_session("live", 4, ended=False)
    sink.write(_batch(0, live), _no_reject)
    assert sorted(sink.open_sessions()) == ["live", "orphan"]
    clock.now += 61
    assert {r.session_id for r in sink.compact_idle()} == {"live", "orphan"}
    assert recording(target, "orphan") == orphan
    # Partition 5 belongs to another instance: its session is left alone.
    assert pending_segments(target, "elsewhere")


def test_revoked_partitions_are_forgotten() -> None:
    target, clock = MemoryTarget(), Clock()
    sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()), idle_timeout_s=1.0, clock=clock)
    sink.write(_batch(0, sample_session("a", 3, ended=False)), _no_reject)
    sink.write(_batch(1, sample_session("b", 3, ended=False)), _no_reject)
    sink.revoke([TopicPartition(TOPIC, 0)])
    clock.now += 2
    assert [r.session_id for r in sink.compact_idle()] == ["b"]
    assert pending_segments(target, "a")


def test_unrenderable_event_is_rejected_and_the_rest_written() -> None:
    target = MemoryTarget()
    sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()))
    events = sample_session("s", 5)
    broken = dict(events[2])
    broken["payload"] = {"not": "a tuple"}
    batch = _batch(0, [*events[:2], broken, *events[3:]])
    rejected: list[tuple[int, ItemError]] = []
    sink.write(batch, lambda record, exc: rejected.append((record.offset, exc)))
    assert [(off, type(exc)) for off, exc in rejected] == [(2, DecodeError)]
    assert recording(target, "s") == [*events[:2], *events[3:]]


def test_failed_segment_write_raises_and_retry_is_idempotent() -> None:
    target = MemoryTarget()
    sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()))
    events = sample_session("s", 8)
    target.fail_puts = True
    with pytest.raises(Exception, match="down"):
        sink.write(_batch(0, events), _no_reject)
    target.fail_puts = False
    sink.write(_batch(0, events), _no_reject)
    sink.write(_batch(0, events), _no_reject)  # redelivered after a lost commit
    assert recording(target, "s") == events


def test_tracker_forgets_only_untouched_sessions() -> None:
    tracker = SessionTracker()
    tracker.touch("s", 0, 1.0)
    seen = tracker.seen_at("s")
    tracker.touch("s", 0, 2.0)
    tracker.forget("s", seen)
    assert "s" in tracker
    tracker.forget("s", 2.0)
    assert "s" not in tracker


def _batch(partition: int, events: list[dict[str, Any]],
           first_offset: int = 0) -> Batch[dict[str, Any]]:
    tp = TopicPartition(TOPIC, partition)
    return Batch({tp: [Record(TOPIC, partition, first_offset + i, None, e, 0, b"")
                       for i, e in enumerate(events)]})


def _no_reject(record: Record[Any], exc: ItemError) -> None:
    raise AssertionError(f"unexpected reject of {record.offset}: {exc}")


def test_a_corrupt_segment_does_not_stall_the_archive() -> None:
    target = MemoryTarget()
    sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()))
    events = sample_session("s", 6)
    sink.write(_batch(0, events[:3]), _no_reject)
    [key] = pending_segments(target, "s")
    target.objects[key.key] = b"not gzip at all"
    sink.write(_batch(0, events[3:], first_offset=3), _no_reject)  # has session.ended: no raise
    assert read_manifest(target, "s") is None
    assert sink.open_sessions() == ["s"]
    assert len(pending_segments(target, "s")) == 2
    assert sink.last_error is not None and "DecodeError" in sink.last_error
