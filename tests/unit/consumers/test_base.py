"""The batching consume loop against in-memory Kafka and sink doubles."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from consumers.base import BatchingConfig, BatchingConsumer, BatchingMetrics
from pipeline.errors import DecodeError, ErrorKind, ItemError
from pipeline.retry import RetryPolicy
from pipeline.sinks import Record, TopicPartition
from pipeline.testing import FakeConsumer, FakeError, InMemoryDeadLetters, InMemorySink

TOPIC = "events"
TP0 = TopicPartition(TOPIC, 0)
TP1 = TopicPartition(TOPIC, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StopWhen(threading.Event):
    """Stops the loop once ``predicate`` holds (or after max_steps); each check ticks the clock."""

    def __init__(self, predicate: Callable[[], bool], clock: Clock, tick: float = 0.1,
                 max_steps: int = 500) -> None:
        super().__init__()
        self.predicate = predicate
        self.clock = clock
        self.tick = tick
        self.steps = 0
        self.max_steps = max_steps

    def is_set(self) -> bool:
        self.steps += 1
        self.clock.now += self.tick
        if self.steps > self.max_steps:
            raise AssertionError("loop did not reach the expected state")
        return self.predicate() or super().is_set()


def decode(raw: bytes) -> str:
    if not raw or raw.startswith(b"bad"):
        raise DecodeError("not a message")
    if raw.startswith(b"boom"):
        raise RuntimeError("decoder bug")
    return raw.decode()


def make(consumer: FakeConsumer, sink: InMemorySink, dlq: InMemoryDeadLetters, clock: Clock,
         **cfg: object) -> BatchingConsumer[str]:
    config = BatchingConfig(**{"max_records": 3, "max_age_s": 1.0, "shutdown_flush_timeout_s": 0.0,
                               "retry": RetryPolicy(initial_s=1.0, max_s=8.0, jitter=0.0,
                                                    max_attempts=None), **cfg})  # type: ignore[arg-type]
    return BatchingConsumer(name="test", consumer=consumer, topics=[TOPIC], deserialize=decode,
                            sink=sink, dead_letters=dlq, metrics=BatchingMetrics(CollectorRegistry()),
                            config=config, clock=clock)


@pytest.fixture
def parts() -> tuple[FakeConsumer, InMemorySink, InMemoryDeadLetters, Clock]:
    return FakeConsumer({TOPIC: 2}), InMemorySink(), InMemoryDeadLetters(), Clock()


def test_full_batch_is_written_then_committed(parts) -> None:
    consumer, sink, dlq, clock = parts
    for i in range(3):
        consumer.produce(TOPIC, 0, f"a{i}".encode(), key=b"s1")
    consumer.produce(TOPIC, 1, b"b0")
    loop = make(consumer, sink, dlq, clock, max_records=4)
    loop.run(StopWhen(lambda: bool(consumer.commits), clock))
    assert sorted(sink.values()) == ["a0", "a1", "a2", "b0"]
    assert consumer.commits[0] == {TP0: 3, TP1: 1}
    assert [r.offset for r in sink.batches[0].partitions[TP0]] == [0, 1, 2]
    assert consumer.closed and sink.closed


def test_a_partial_batch_is_flushed_when_it_expires(parts) -> None:
    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 0, b"only")
    loop = make(consumer, sink, dlq, clock, max_records=100, max_age_s=0.5)
    stop = StopWhen(lambda: bool(consumer.commits), clock)
    loop.run(stop)
    assert sink.values() == ["only"]
    assert consumer.committed == {TP0: 1}
    assert stop.steps >= 5  # not before max_age_s of (fake) time


def test_undecodable_messages_go_to_the_dlq_and_their_offsets_are_committed(parts) -> None:
    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 0, b"ok1", key=b"sess")
    consumer.produce(TOPIC, 0, b"bad bytes", key=b"sess")
    consumer.produce(TOPIC, 0, b"boom")
    consumer.produce(TOPIC, 0, None, error=None)
    loop = make(consumer, sink, dlq, clock, max_records=10, max_age_s=0.2)
    loop.run(StopWhen(lambda: consumer.committed.get(TP0) == 4, clock))
    assert sink.values() == ["ok1"]
    kinds = [letter["error_kind"] for letter, _ in dlq.durable]
    assert kinds == [ErrorKind.DECODE_ERROR.value] * 3
    first, key = dlq.durable[0]
    assert key == b"sess" and first["session_id"] == "sess"
    assert first["source_offset"] == 1 and first["original_bytes"] is None
    assert first["stage"] == "sink"


def test_dead_letters_are_durable_before_the_commit(parts) -> None:
    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 0, b"bad")
    dlq.fail_flushes = 2
    loop = make(consumer, sink, dlq, clock, max_age_s=0.1)
    loop.run(StopWhen(lambda: bool(consumer.commits), clock))
    assert len(dlq.durable) == 1
    assert consumer.committed == {TP0: 1}


def test_a_failed_write_keeps_the_batch_pauses_and_retries_with_backoff(parts) -> None:
    consumer, sink, dlq, clock = parts
    for i in range(3):
        consumer.produce(TOPIC, 0, f"m{i}".encode())
    sink.fail_transient(times=2)
    loop = make(consumer, sink, dlq, clock)
    seen: list[tuple[float, bool]] = []

    def done() -> bool:
        seen.append((clock.now, bool(consumer.paused)))
        return bool(consumer.commits)

    loop.run(StopWhen(done, clock))
    assert sink.values() == ["m0", "m1", "m2"]
    assert [b.attempt for b in sink.batches] == [1, 2, 3]
    assert consumer.commits == [{TP0: 3}]
    assert any(paused for _, paused in seen)
    assert not consumer.paused
    assert loop.health()["consecutive_failures"] == 0


def test_no_commit_while_the_backend_is_down(parts) -> None:
    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 0, b"x")
    sink.fail_transient(times=1000)
    loop = make(consumer, sink, dlq, clock, max_age_s=0.1)
    seen: list[dict[str, object]] = []

    def watch() -> bool:
        seen.append(loop.health())
        return len(seen) >= 200  # ~100 s of fake time

    loop.run(StopWhen(watch, clock, tick=0.5))
    assert consumer.commits == []
    assert 5 <= len(sink.batches) < 60  # backoff (8 s max wait), not a spin
    assert seen[-1]["retrying"] is True and "backend down" in str(seen[-1]["last_error"])
    assert seen[-1]["healthy"] is True


def test_backpressure_retry_after_is_honoured(parts) -> None:
    consumer, sink, dlq, clock = parts
    for i in range(3):
        consumer.produce(TOPIC, 0, f"m{i}".encode())
    sink.push_back(retry_after=5.0)
    loop = make(consumer, sink, dlq, clock)
    times: list[float] = []
    original = sink.write

    def timed_write(batch, reject) -> None:
        times.append(clock.now)
        original(batch, reject)

    sink.write = timed_write  # type: ignore[method-assign]
    loop.run(StopWhen(lambda: bool(consumer.commits), clock))
    assert len(times) == 2
    assert times[1] - times[0] >= 5.0


def test_revoked_partitions_drop_their_batch_and_are_read_again(parts) -> None:
    consumer, sink, dlq, clock = parts
    for i in range(3):
        consumer.produce(TOPIC, 0, f"m{i}".encode())
    sink.fail_transient(times=1)
    loop = make(consumer, sink, dlq, clock)
    state = {"rebalanced": False}

    def step() -> bool:
        if sink.batches and not state["rebalanced"]:
            state["rebalanced"] = True
            consumer.rebalance()
        return bool(consumer.commits)

    loop.run(StopWhen(step, clock))
    assert set(sink.revoked) >= {TP0, TP1}
    assert sink.values() == ["m0", "m1", "m2"]
    # Read again from the committed offset after the revoke: a fresh first attempt.
    assert sink.batches[-1].attempt == 1


def test_lost_partitions_are_dropped_like_revoked_ones(parts) -> None:
    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 0, b"m0")
    loop = make(consumer, sink, dlq, clock, max_records=100, max_age_s=5.0)
    state = {"lost": False}

    def step() -> bool:
        if loop.health()["buffered"] == 1 and not state["lost"]:
            state["lost"] = True
            consumer.rebalance(lost=True)
            return False
        return state["lost"] and bool(consumer.commits)

    loop.run(StopWhen(step, clock))
    assert sink.values() == ["m0"]
    assert len(sink.batches) == 1


def test_rejected_records_are_dead_lettered_with_their_bytes(parts) -> None:
    consumer, _, dlq, clock = parts
    sink = InMemorySink(reject_if=lambda r: ItemError("refused", kind=ErrorKind.SINK_REJECTED)
                        if r.value == "no" else None)
    for v in (b"yes", b"no", b"yes2"):
        consumer.produce(TOPIC, 0, v, key=b"k")
    loop = make(consumer, sink, dlq, clock)
    loop.run(StopWhen(lambda: bool(consumer.commits), clock))
    assert sink.values() == ["yes", "yes2"]
    assert len(dlq.durable) == 1
    letter, _ = dlq.durable[0]
    assert letter["error_kind"] == "sink_rejected"
    assert letter["original_bytes"] == b"no" and letter["source_offset"] == 1
    assert consumer.committed == {TP0: 3}


def test_shutdown_flushes_and_commits_what_is_buffered(parts) -> None:
    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 1, b"late")
    loop = make(consumer, sink, dlq, clock, max_records=100, max_age_s=60.0)
    loop.run(StopWhen(lambda: loop.health()["buffered"] == 1, clock))
    assert sink.values() == ["late"]
    assert consumer.committed == {TP1: 1}
    assert loop.health()["state"] == "stopped"


def test_a_failed_commit_does_not_stop_the_loop(parts) -> None:
    consumer, sink, dlq, clock = parts
    for i in range(6):
        consumer.produce(TOPIC, 0, f"m{i}".encode())
    consumer.fail_commits = 1
    loop = make(consumer, sink, dlq, clock, consume_max=3)
    loop.run(StopWhen(lambda: consumer.committed.get(TP0) == 6, clock))
    assert sink.values() == [f"m{i}" for i in range(6)]


def test_a_fatal_consumer_error_stops_the_loop(parts) -> None:
    from confluent_kafka import KafkaException

    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 0, None, error=FakeError(-150, fatal_=True))
    loop = make(consumer, sink, dlq, clock)
    with pytest.raises(KafkaException):
        loop.run(StopWhen(lambda: False, clock))
    assert loop.health()["healthy"] is False
    assert consumer.closed


def test_non_fatal_consumer_errors_and_eof_are_skipped(parts) -> None:
    from confluent_kafka import KafkaError

    consumer, sink, dlq, clock = parts
    consumer.produce(TOPIC, 0, None, error=FakeError(KafkaError._PARTITION_EOF))
    consumer.produce(TOPIC, 0, None, error=FakeError(KafkaError._TRANSPORT))
    consumer.produce(TOPIC, 0, b"fine")
    loop = make(consumer, sink, dlq, clock, max_age_s=0.1)
    loop.run(StopWhen(lambda: bool(sink.written), clock))
    assert sink.values() == ["fine"]
    assert all(isinstance(r, Record) for r in sink.written)


def test_batches_never_exceed_max_records(parts) -> None:
    consumer, sink, dlq, clock = parts
    for i in range(10):
        consumer.produce(TOPIC, i % 2, f"m{i}".encode())
    loop = make(consumer, sink, dlq, clock, max_records=3, max_age_s=0.5)
    loop.run(StopWhen(lambda: len(sink.written) == 10, clock))
    assert max(len(b) for b in sink.batches) <= 3
    assert consumer.committed == {TP0: 5, TP1: 5}
