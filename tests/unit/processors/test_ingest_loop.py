"""The first stage's consume-transform-produce loop against in-memory stand-ins of librdkafka.

What must hold whatever the broker does: a batch's outputs and its offsets are committed in one
transaction or not at all; an aborted batch is read again from the committed offsets; a
retriable failure repeats the call, a fatal one stops the loop. The real broker side (SIGKILL,
rebalances, exactly-once counts) is tests/integration/test_worker_pipeline.py.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from kafka_message import Msg

from pipeline.model import new_event
from pipeline.redaction import Redactor, redact_raw
from pipeline.serde import AvroSerde
from processors.ingest_loop import IngestLoop, IngestLoopConfig
from processors.kafka_calls import StageFailedError
from processors.metrics import WorkerMetrics
from processors.validate import EventProcessor, Limits

INGEST, EVENTS, DLQ = "ingest", "events", "dlq"
NOW_US = 1_800_000_000_000_000
REBALANCE: list[Any] = ["rebalance"]
"""A scripted 'batch' that makes the fake consumer revoke and re-assign its partitions."""
GITHUB_TOKEN = "ghp_" + "Zq8Xw3Lk9Vb2Nm4Pr6Ts1Yu7Ei5Oa0Hc3Jd8"


class FakeConsumer:
    """Hands out the scripted batches; records seeks and commits; assigns partitions 0-1."""

    def __init__(self, batches: list[list[Msg]], stop: threading.Event,
                 committed: dict[int, int] | None = None) -> None:
        self.batches = batches
        self.stop = stop
        self.committed_offsets = committed or {}
        self.committed_failures: list[KafkaError] = []
        """Errors the next committed() calls raise, one each."""
        self.seeks: list[tuple[int, int]] = []
        self.commits: list[list[tuple[int, int]]] = []
        self.closed = False
        self.callbacks: dict[str, Any] = {}

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        assert topics == [INGEST]
        self.callbacks = callbacks
        callbacks["on_assign"](self, [TopicPartition(INGEST, 0), TopicPartition(INGEST, 1)])

    def poll(self, timeout: float) -> Msg | None:
        if not self.batches:
            self.stop.set()
            return None
        if self.batches[0] == REBALANCE:
            self.batches.pop(0)
            parts = [TopicPartition(INGEST, 0), TopicPartition(INGEST, 1)]
            self.callbacks["on_revoke"](self, parts)
            self.callbacks["on_assign"](self, parts)
            return None
        batch = self.batches[0]
        if not batch:
            self.batches.pop(0)
            return None
        return batch.pop(0)

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        batch = self.batches.pop(0) if self.batches else []
        return batch[:num_messages]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(INGEST, 0), TopicPartition(INGEST, 1)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.committed_failures:
            raise KafkaException(self.committed_failures.pop(0))
        return [TopicPartition(INGEST, tp.partition, self.committed_offsets.get(tp.partition, -1001))
                for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """A transactional producer: what was produced becomes 'committed' only with its offsets."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.open: list[tuple[str, bytes | None, bytes]] = []
        self.committed: list[tuple[str, bytes | None, bytes]] = []
        self.offsets: list[list[tuple[int, int]]] = []
        self.pending_offsets: list[tuple[int, int]] = []
        self.fail: dict[str, list[KafkaError]] = {}
        self.delivery_errors: list[str] = []

    def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        errors = self.fail.get(call)
        if errors:
            raise KafkaException(errors.pop(0))

    def init_transactions(self, timeout: float) -> None:
        self._maybe_fail("init")

    def begin_transaction(self) -> None:
        self._maybe_fail("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None,
                on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        self.open.append((topic, key, value))
        if on_delivery is not None:
            on_delivery(self.delivery_errors.pop(0) if self.delivery_errors else None, None)

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any,
                                    timeout: float) -> None:
        assert metadata == "group-metadata"
        self._maybe_fail("send_offsets")
        self.pending_offsets = [(tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout: float) -> None:
        self._maybe_fail("commit")
        self.committed += self.open
        self.offsets.append(self.pending_offsets)
        self.open, self.pending_offsets = [], []

    def abort_transaction(self, timeout: float) -> None:
        self._maybe_fail("abort")
        self.open, self.pending_offsets = [], []

    def poll(self, timeout: float) -> int:
        return 0

    def purge(self) -> None:
        self.calls.append("purge")
        self.open = []

    def flush(self, timeout: float) -> int:
        self.committed += self.open
        self.open = []
        return 0


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processors.ingest_loop._RETRY_PAUSE_S", 0.0)


def make_processor(serde: AvroSerde, redactor: Redactor) -> EventProcessor:
    return EventProcessor(serde, redactor, functools.partial(redact_raw, redactor=redactor),
                          Limits(), clock=lambda: NOW_US)


def good(serde: AvroSerde, partition: int, offset: int, text: str = "ok") -> Msg:
    ev = new_event("command.executed", f"s{partition}", {"binary": "pytest", "exit_code": 0,
                                                          "args": [text]},
                   timestamp_us=NOW_US - 1_000_000)
    return Msg(INGEST, partition, offset, serde.encode_event(ev), f"s{partition}".encode())


def run_loop(serde: AvroSerde, batches: list[list[Msg]], *, transactional: bool = True,
             producer: FakeProducer | None = None, committed: dict[int, int] | None = None,
             ) -> tuple[FakeConsumer, FakeProducer, WorkerMetrics]:
    stop = threading.Event()
    consumer = FakeConsumer(batches, stop, committed)
    producer = producer or FakeProducer()
    metrics = WorkerMetrics()
    loop = IngestLoop(cast(Any, consumer), lambda: cast(Any, producer), make_processor(serde, Redactor()),
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=transactional,
                                       batch_max=100),
                      metrics)
    loop.run(stop)
    return consumer, producer, metrics


def metric(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_batch_commits_its_outputs_with_its_offsets_in_one_transaction(serde: AvroSerde) -> None:
    batch = [good(serde, 0, 5), good(serde, 1, 7, f"echo {GITHUB_TOKEN}"),
             Msg(INGEST, 0, 6, b"\x00garbage"),
             good(serde, 1, 8)]
    consumer, producer, metrics = run_loop(serde, [batch])
    assert producer.calls == ["init", "begin", "send_offsets", "commit"]
    assert [t for t, _, _ in producer.committed] == [EVENTS, EVENTS, DLQ, EVENTS]
    assert producer.offsets == [[(0, 7), (1, 9)]]  # the next offset of each input partition
    assert all(GITHUB_TOKEN.encode() not in value for _, _, value in producer.committed)
    assert metric(metrics, "agentwatch_worker_messages_total", outcome="event") == 3
    assert metric(metrics, "agentwatch_worker_messages_total", outcome="dead_letter") == 1
    assert metric(metrics, "agentwatch_worker_transactions_total", outcome="committed") == 1
    assert consumer.closed and not consumer.commits  # offsets go with the transaction only


def test_an_abortable_failure_aborts_and_reads_the_batch_again(serde: AvroSerde) -> None:
    producer = FakeProducer()
    producer.fail["commit"] = [KafkaError(KafkaError._FENCED, "fenced by a new generation",
                                          txn_requires_abort=True)]
    first = [good(serde, 0, 5), good(serde, 1, 9)]
    again = [good(serde, 0, 5), good(serde, 1, 9)]  # what the broker hands out after the seek
    consumer, producer, metrics = run_loop(serde, [first, again], producer=producer,
                                           committed={0: 5})
    assert "abort" in producer.calls
    # The batch after an abort starts on a renewed producer (init_transactions again).
    assert producer.calls.count("init") == 2 and "purge" in producer.calls
    # Partition 0 back to its committed offset, partition 1 (nothing committed) to the start.
    assert consumer.seeks == [(0, 5), (1, OFFSET_BEGINNING)]
    assert len(producer.committed) == 2 and producer.offsets == [[(0, 6), (1, 10)]]
    assert metric(metrics, "agentwatch_worker_transactions_total", outcome="aborted") == 1
    assert metric(metrics, "agentwatch_worker_messages_total", outcome="event") == 2


def test_a_retriable_failure_repeats_the_call_in_the_same_transaction(serde: AvroSerde) -> None:
    producer = FakeProducer()
    producer.fail["commit"] = [KafkaError(KafkaError._TIMED_OUT, "coordinator away", retriable=True)]
    _consumer, producer, metrics = run_loop(serde, [[good(serde, 0, 1)]], producer=producer)
    assert producer.calls == ["init", "begin", "send_offsets", "commit", "commit"]
    assert len(producer.committed) == 1 and producer.offsets == [[(0, 2)]]
    assert metric(metrics, "agentwatch_worker_transactions_total", outcome="aborted") == 0


def test_a_fatal_failure_stops_the_loop_and_reports_it(serde: AvroSerde) -> None:
    producer = FakeProducer()
    producer.fail["send_offsets"] = [KafkaError(KafkaError._FENCED, "producer fenced", fatal=True)]
    stop = threading.Event()
    consumer = FakeConsumer([[good(serde, 0, 1)]], stop)
    loop = IngestLoop(cast(Any, consumer), lambda: cast(Any, producer), make_processor(serde, Redactor()),
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=True), WorkerMetrics())
    with pytest.raises(StageFailedError, match="producer fenced"):
        loop.run(stop)
    assert producer.committed == [] and consumer.closed
    snapshot = loop.snapshot()
    assert not snapshot.running and snapshot.failure is not None


def test_at_least_once_commits_offsets_only_after_delivery(serde: AvroSerde) -> None:
    producer = FakeProducer()
    producer.delivery_errors = ["broker refused", None]  # type: ignore[list-item]
    batch = [good(serde, 0, 3), good(serde, 0, 4)]
    consumer, producer, _metrics = run_loop(
        serde, [batch, [good(serde, 0, 3), good(serde, 0, 4)]], transactional=False,
        producer=producer, committed={0: 3})
    # The first delivery failed: no commit, rewind to 3; the second attempt commits 5.
    assert consumer.seeks == [(0, 3), (1, OFFSET_BEGINNING)]
    assert consumer.commits == [[(0, 5)]]
    assert "init" not in producer.calls and "begin" not in producer.calls


def test_a_rewind_waits_out_a_committed_offsets_timeout(serde: AvroSerde) -> None:
    """committed() times out with a plain, non-retriable _TIMED_OUT while the broker is away;
    the rewind must wait that out, not stop the stage (a CI broker outage crashed the worker)."""
    producer = FakeProducer()
    producer.delivery_errors = ["broker away", None]  # type: ignore[list-item]
    stop = threading.Event()
    batch = [good(serde, 0, 3), good(serde, 0, 4)]
    consumer = FakeConsumer([batch, [good(serde, 0, 3), good(serde, 0, 4)]], stop, {0: 3})
    consumer.committed_failures = [KafkaError(KafkaError._TIMED_OUT, "Failed to get committed "
                                              "offsets: Local: Timed out")] * 2
    loop = IngestLoop(cast(Any, consumer), lambda: cast(Any, producer),
                      make_processor(serde, Redactor()),
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=False), WorkerMetrics())
    loop.run(stop)
    assert loop.snapshot().failure is None
    assert consumer.committed_failures == []
    assert consumer.seeks == [(0, 3), (1, OFFSET_BEGINNING)]
    assert consumer.commits == [[(0, 5)]]


def test_a_fatal_error_while_rewinding_stops_the_stage(serde: AvroSerde) -> None:
    producer = FakeProducer()
    producer.delivery_errors = ["broker away"]
    stop = threading.Event()
    consumer = FakeConsumer([[good(serde, 0, 3)]], stop, {0: 3})
    consumer.committed_failures = [KafkaError(KafkaError._FATAL, "fenced", fatal=True)]
    loop = IngestLoop(cast(Any, consumer), lambda: cast(Any, producer),
                      make_processor(serde, Redactor()),
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=False), WorkerMetrics())
    with pytest.raises(StageFailedError, match="rewind: fenced"):
        loop.run(stop)


def test_a_rebalance_renews_the_producer_before_the_next_transaction(serde: AvroSerde) -> None:
    """librdkafka's send_offsets_to_transaction can hang on a coordinator cached before the
    group changed (docs/worker.md): after a revoke the next transaction gets a fresh producer."""
    producers: list[FakeProducer] = []

    def factory() -> Any:
        producers.append(FakeProducer())
        return producers[-1]

    stop = threading.Event()
    consumer = FakeConsumer([[good(serde, 0, 1)], REBALANCE, [good(serde, 0, 2)]], stop)
    loop = IngestLoop(cast(Any, consumer), factory, make_processor(serde, Redactor()),
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=True), WorkerMetrics())
    loop.run(stop)
    assert len(producers) == 2
    assert producers[0].offsets == [[(0, 2)]] and producers[0].calls[-1] == "purge"
    assert producers[1].calls == ["init", "begin", "send_offsets", "commit"]
    assert producers[1].offsets == [[(0, 3)]]


class Broker:
    """The ingest partitions as logs, and the group's committed offsets, which only a committed
    transaction (or, at least once, a commit) moves."""

    def __init__(self, serde: AvroSerde, sizes: dict[int, int]) -> None:
        self.logs = {p: [good(serde, p, o, text=f"<{p}:{o}>") for o in range(n)]
                     for p, n in sizes.items()}
        self.committed = dict.fromkeys(sizes, 0)

    def done(self) -> bool:
        return all(self.committed[p] == len(log) for p, log in self.logs.items())


class LogConsumer(FakeConsumer):
    """librdkafka's consumer as far as the loop can tell it: it returns messages from its
    positions and moves them past what it returns; an assignment starts every partition at its
    committed offset; the rebalance callbacks run inside poll()/consume().

    ``script`` maps a call's number (1, 2, ...) to what happens in it: "revoke", "assign",
    "both" (revoke and assign, then messages of the new assignment), or "revoked_late"
    (messages fetched before a revoke, returned by the call that ran it).
    """

    def __init__(self, broker: Broker, stop: threading.Event, script: dict[int, str]) -> None:
        super().__init__([], stop)
        self.broker = broker
        self.script = script
        self.positions: dict[int, int] = {}
        self.calls = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks
        self._assign()

    def _parts(self) -> list[TopicPartition]:
        return [TopicPartition(INGEST, p) for p in sorted(self.broker.logs)]

    def _assign(self) -> None:
        self.callbacks["on_assign"](self, self._parts())
        self.positions = dict(self.broker.committed)

    def _revoke(self) -> None:
        self.callbacks["on_revoke"](self, self._parts())
        self.positions = {}

    def _fetch(self, n: int) -> list[Msg]:
        out: list[Msg] = []
        for p in sorted(self.positions):
            log = self.broker.logs[p]
            while len(out) < n and self.positions[p] < len(log):
                out.append(log[self.positions[p]])
                self.positions[p] += 1
        return out

    def _serve(self, n: int) -> list[Msg]:
        self.calls += 1
        if self.broker.done() or self.calls > 500:
            self.stop.set()
        action = self.script.get(self.calls)
        if action == "revoked_late":
            fetched = self._fetch(n)
            self._revoke()
            return fetched
        if action in ("revoke", "both"):
            self._revoke()
        if action in ("assign", "both"):
            self._assign()
        return self._fetch(n)

    def poll(self, timeout: float) -> Msg | None:
        got = self._serve(1)
        return got[0] if got else None

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        return self._serve(num_messages)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(INGEST, p) for p in sorted(self.positions)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(INGEST, tp.partition, self.broker.committed[tp.partition])
                for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.positions[tp.partition] = 0 if tp.offset == OFFSET_BEGINNING else tp.offset

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.broker.committed.update((tp.partition, tp.offset) for tp in offsets)


class BrokerProducer(FakeProducer):
    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker

    def commit_transaction(self, timeout: float) -> None:
        pending = self.pending_offsets
        super().commit_transaction(timeout)
        self.broker.committed.update(pending)


def delivered(producers: list[FakeProducer]) -> Counter[str]:
    """How often each ingest message's output was committed, by its ``<partition:offset>``."""
    return Counter(m.decode() for p in producers for _, _, value in p.committed
                   for m in re.findall(rb"<\d+:\d+>", value))


SCRIPTS = {
    **{f"both@{k}": {k: "both"} for k in range(1, 9)},
    **{f"split@{k}": {k: "revoke", k + 1: "assign"} for k in range(1, 9)},
    **{f"revoked_late@{k}": {k: "revoked_late", k + 2: "assign"} for k in range(1, 9)},
}


@pytest.mark.parametrize("pooled", [False, True], ids=["inline", "pool"])
@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_a_rebalance_anywhere_loses_and_repeats_nothing(serde: AvroSerde, script: dict[int, str],
                                                        pooled: bool) -> None:
    """Wherever the callbacks run, every message is committed exactly once. Dropping the
    messages a consume() returned after the new assignment lost them in CI (the position had
    moved past them); keeping messages gathered before the rebalance would commit past what the
    new assignment reads again."""
    broker = Broker(serde, {0: 7, 1: 5})
    stop = threading.Event()
    producers: list[FakeProducer] = []

    def factory() -> Any:
        producers.append(BrokerProducer(broker))
        return producers[-1]

    processor = make_processor(serde, Redactor())
    pool = cast(Any, RecordingPool(processor, [])) if pooled else None
    loop = IngestLoop(cast(Any, LogConsumer(broker, stop, script)), factory, processor,
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=True, batch_max=3),
                      WorkerMetrics(), pool=pool)
    loop.run(stop)
    assert broker.done(), broker.committed
    expected = {f"<{p}:{o}>" for p, log in broker.logs.items() for o in range(len(log))}
    counts = delivered(producers)
    assert set(counts) == expected
    assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n != 1}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_at_least_once_a_rebalance_anywhere_loses_nothing(serde: AvroSerde,
                                                          script: dict[int, str]) -> None:
    broker = Broker(serde, {0: 7, 1: 5})
    stop = threading.Event()
    producer = FakeProducer()
    loop = IngestLoop(cast(Any, LogConsumer(broker, stop, script)), lambda: cast(Any, producer),
                      make_processor(serde, Redactor()),
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=False, batch_max=3),
                      WorkerMetrics())
    loop.run(stop)
    assert broker.done(), broker.committed
    expected = {f"<{p}:{o}>" for p, log in broker.logs.items() for o in range(len(log))}
    assert set(delivered([producer])) == expected


class RecordingPool:
    """The pool's interface, processing inline when collected; logs each submit in ``calls``."""

    def __init__(self, processor: EventProcessor, calls: list[str]) -> None:
        self.processor = processor
        self.calls = calls

    def submit(self, items: list[tuple[bytes, Any]]) -> Callable[[], list[Any]]:
        self.calls.append(f"submit {','.join(str(meta.offset) for _, meta in items)}")
        return lambda: [self.processor.process(raw, meta) for raw, meta in items]

    def close(self) -> None:
        pass


def run_pooled(serde: AvroSerde, consumer: FakeConsumer, stop: threading.Event,
               producers: list[FakeProducer], calls: list[str], *,
               first_commit: KafkaError | None = None) -> WorkerMetrics:
    """Runs the loop with batches of 2 and a pool; ``first_commit`` fails the first producer's
    first commit."""
    def factory() -> Any:
        producer = FakeProducer()
        producer.calls = calls
        if first_commit is not None and not producers:
            producer.fail["commit"] = [first_commit]
        producers.append(producer)
        return producer

    processor = make_processor(serde, Redactor())
    metrics = WorkerMetrics()
    loop = IngestLoop(cast(Any, consumer), factory, processor,
                      IngestLoopConfig(INGEST, EVENTS, DLQ, transactional=True, batch_max=2),
                      metrics, pool=cast(Any, RecordingPool(processor, calls)))
    loop.run(stop)
    return metrics


def test_with_a_pool_a_full_batch_commits_while_the_next_one_is_processed(serde: AvroSerde) -> None:
    stop = threading.Event()
    batches = [[good(serde, 0, 1), good(serde, 0, 2)], [good(serde, 0, 3), good(serde, 1, 1)],
               [good(serde, 1, 2)]]
    producers: list[FakeProducer] = []
    calls: list[str] = []
    run_pooled(serde, FakeConsumer(batches, stop), stop, producers, calls)
    # Batch 1 (full) waits until batch 2 is in the pool; batch 3 (not full) commits at once.
    assert calls == ["init", "submit 1,2", "submit 3,1", "begin", "send_offsets", "commit",
                     "submit 2", "begin", "send_offsets", "commit",
                     "begin", "send_offsets", "commit"]
    assert producers[0].offsets == [[(0, 3)], [(0, 4), (1, 2)], [(1, 3)]]
    assert len(producers[0].committed) == 5


def test_an_aborted_commit_drops_the_batch_already_in_the_pool(serde: AvroSerde) -> None:
    """The abort rewinds to the committed offsets, so the batch read after the held one is
    stale as well: both are read and committed again, once each."""
    stop = threading.Event()
    first, second = [good(serde, 0, 1), good(serde, 0, 2)], [good(serde, 0, 3), good(serde, 0, 4)]
    again = [[good(serde, 0, 1), good(serde, 0, 2)], [good(serde, 0, 3), good(serde, 0, 4)]]
    consumer = FakeConsumer([first, second, *again], stop, committed={0: 1})
    producers: list[FakeProducer] = []
    metrics = run_pooled(serde, consumer, stop, producers, [], first_commit=KafkaError(
        KafkaError._FENCED, "fenced", txn_requires_abort=True))
    assert consumer.seeks == [(0, 1), (1, OFFSET_BEGINNING)]
    assert [o for p in producers for o in p.offsets] == [[(0, 3)], [(0, 5)]]
    assert sum(len(p.committed) for p in producers) == 4
    assert metric(metrics, "agentwatch_worker_messages_total", outcome="event") == 4
