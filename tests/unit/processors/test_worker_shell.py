"""The Faust-facing pieces of the worker without a broker: codec, commit gate, output router."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.serializers import codecs
from faust.types import TP

from pipeline.errors import EncodeError, UnknownSchemaError
from pipeline.model import new_event
from pipeline.serde import AvroSerde
from processors.codec import AvroCodec, avro_codecs
from processors.delivery import CommitGate, OutputRouter


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


def test_event_codec_round_trips_through_faust(serde: AvroSerde) -> None:
    codec = avro_codecs(serde)["avro-event"]
    ev = new_event("file.read", "s1", {"path": "a.py"})
    data = codecs.dumps(codec, ev)
    assert data == serde.encode_event(ev)  # Avro single-object encoding, not JSON
    assert codecs.loads(codec, data) == ev


def test_codec_rejects_the_wrong_record_both_ways(serde: AvroSerde) -> None:
    event_codec = AvroCodec(serde, "dev.agentwatch.TelemetryEvent")
    letter_codec = AvroCodec(serde, "dev.agentwatch.DeadLetter")
    letter = {"source_topic": "t", "error_kind": "decode_error", "error_message": "m",
              "first_seen": 1}
    encoded_letter = letter_codec.dumps(letter)
    with pytest.raises(UnknownSchemaError):
        event_codec.loads(encoded_letter)
    with pytest.raises(EncodeError):
        event_codec.dumps(encoded_letter)
    with pytest.raises(EncodeError):
        event_codec.dumps(["not", "a", "record"])


def test_codec_accepts_bytes_already_encoded_for_its_record(serde: AvroSerde) -> None:
    codec = AvroCodec(serde, "dev.agentwatch.TelemetryEvent")
    data = serde.encode_event(new_event("file.read", "s1", {"path": "a.py"}))
    assert codec.dumps(data) is data


def test_codec_survives_faust_cloning(serde: AvroSerde) -> None:
    codec = AvroCodec(serde, "dev.agentwatch.TelemetryEvent")
    chained = codec | codecs.get_codec("binary")
    ev = new_event("file.read", "s1", {"path": "a.py"})
    assert chained.loads(chained.dumps(ev)) == ev


class _FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[str] = []

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        self.commits.append("commit")
        return True


async def test_commit_waits_for_a_batch_in_its_send_phase() -> None:
    gate = CommitGate()
    consumer = _FakeConsumer()
    gate.install(consumer)
    gate.install(consumer)  # idempotent: not wrapped twice
    order: list[str] = []
    async with gate.sending():
        commit = asyncio.ensure_future(consumer.commit())
        await asyncio.sleep(0.01)
        assert not commit.done()  # a timer/rebalance commit must not cut into the batch
        order.append("batch done")
    assert await commit is True
    order.append("committed")
    assert order == ["batch done", "committed"]
    assert consumer.commits == ["commit"]


def _app(in_transaction: bool) -> Any:
    sent: list[tuple[Any, ...]] = []

    async def send(topic: str, key: Any, value: Any, partition: Any, timestamp: Any,
                   headers: Any, *, transactional_id: str | None = None) -> Any:
        sent.append((topic, key, value, partition, transactional_id))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    return SimpleNamespace(
        in_transaction=in_transaction,
        conf=SimpleNamespace(id="aw-worker"),
        assignor=SimpleNamespace(group_for_topic=lambda topic: 0),
        producer=SimpleNamespace(send=send),
        sent=sent,
    )


async def test_outputs_ride_the_transaction_of_their_input_partition() -> None:
    app = _app(True)
    router = OutputRouter(app)
    await router.send("events", b"k", b"v", TP("ingest", 7))
    await router.send("dlq", None, b"d", TP("ingest", 2))
    # Faust's TransactionManager names its per-partition producers "{app id}-{group}-{partition}".
    assert app.sent == [("events", b"k", b"v", None, "aw-worker-0-7"),
                        ("dlq", None, b"d", None, "aw-worker-0-2")]


async def test_at_least_once_uses_the_plain_producer() -> None:
    app = _app(False)
    router = OutputRouter(app)
    await router.send("events", b"k", b"v", TP("ingest", 7))
    assert app.sent == [("events", b"k", b"v", None, None)]
    assert router.transactional is False


async def test_a_poisoned_gate_commits_nothing_more() -> None:
    gate = CommitGate()
    consumer = _FakeConsumer()
    gate.install(consumer)
    assert await consumer.commit() is True
    gate.poison("stopped in the middle of a batch")
    gate.poison("a second reason does not replace the first")
    assert await consumer.commit() is False
    assert consumer.commits == ["commit"]
    assert gate.poisoned == "stopped in the middle of a batch"


class _TxnProducer:
    """An aiokafka transactional producer as far as its transaction state goes."""

    def __init__(self, state: Any) -> None:
        self._txn_manager = SimpleNamespace(state=state)
        self.begun = 0

    async def begin_transaction(self) -> None:
        from aiokafka.producer.transaction_manager import TransactionState  # type: ignore[import-untyped]

        self.begun += 1
        self._txn_manager.state = TransactionState.IN_TRANSACTION


async def test_a_timer_commit_after_the_transactions_ended_begins_them_again() -> None:
    """Between the commit that ends the transactions (revocation, shutdown) and Faust's next
    begin, a timer commit must not meet a producer outside a transaction."""
    from aiokafka.producer.transaction_manager import TransactionState

    ended, running = _TxnProducer(TransactionState.READY), _TxnProducer(TransactionState.IN_TRANSACTION)
    consumer = _FakeConsumer()
    seen_at_commit: list[Any] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        seen_at_commit.append((ended._txn_manager.state, kwargs.get("start_new_transaction", True)))
        return True

    consumer.commit = commit  # type: ignore[method-assign]
    consumer.app = SimpleNamespace(producer=SimpleNamespace(  # type: ignore[attr-defined]
        _transaction_producers={"a-0-0": ended, "a-0-1": running},
        _trn_locks={"a-0-0": asyncio.Lock()}))
    CommitGate().install(consumer)
    await consumer.commit()
    assert (ended.begun, running.begun) == (1, 0)
    assert seen_at_commit == [(TransactionState.IN_TRANSACTION, True)]
    # The ending commit itself is left alone: it is the one that ends them.
    ended._txn_manager.state = TransactionState.READY
    await consumer.commit(start_new_transaction=False)
    assert ended.begun == 1


class _Builder:
    def __init__(self, capacity: int) -> None:
        self.capacity, self.records = capacity, []

    def append(self, *, key: bytes | None, value: bytes, timestamp: Any) -> Any:
        if sum(len(v) for _, v in self.records) + len(value) > self.capacity:
            return None
        self.records.append((key, value))
        return object()


class _AioProducer:
    """The slice of aiokafka's AIOKafkaProducer that OutputRouter.send_many uses."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.batches: list[tuple[str, int, list[tuple[Any, bytes]]]] = []
        self.singles: list[tuple[str, int, bytes]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> _Builder:
        return _Builder(self.capacity)

    async def _done(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        self.batches.append((topic, partition, batch.records))
        return await self._done()

    async def send(self, topic: str, value: bytes, *, key: Any, partition: int) -> Any:
        self.singles.append((topic, partition, value))
        return await self._done()


async def test_send_many_builds_record_batches_per_transaction_and_partition() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from processors.delivery import Output

    app = _app(True)
    p7, p2 = _AioProducer(), _AioProducer()
    app.producer._transaction_producers = {"aw-worker-0-7": p7, "aw-worker-0-2": p2}
    router = OutputRouter(app)
    outputs = [Output("events", f"s{i}".encode(), b"v" * 30, TP("ingest", 7)) for i in range(12)]
    outputs += [Output("dlq", None, b"d" * 10, TP("ingest", 2)),
                Output("events", b"big", b"x" * 500, TP("ingest", 2))]
    futures = await router.send_many(outputs)
    assert all(f.done() for f in futures)
    part = DefaultPartitioner()
    sent7 = [(t, p, k) for t, p, recs in p7.batches for k, _ in recs]
    assert sorted(sent7) == sorted(("events", part(o.key, [0, 1, 2], [0, 1, 2]), o.key)
                                   for o in outputs[:12])
    assert all(sum(len(v) for _, v in recs) <= 100 for _, _, recs in p7.batches)
    assert [(t, len(recs)) for t, _, recs in p2.batches] == [("dlq", 1)]
    assert [(t, len(v)) for t, _, v in p2.singles] == [("events", 500)]  # too big for a batch
    assert len(futures) == len(p7.batches) + len(p2.batches) + len(p2.singles)


async def test_send_many_refuses_a_partition_it_has_no_transaction_for() -> None:
    from faust.exceptions import ProducerSendError

    from processors.delivery import Output

    app = _app(True)
    app.producer._transaction_producers = {}
    with pytest.raises(ProducerSendError):
        await OutputRouter(app).send_many([Output("events", b"k", b"v", TP("ingest", 1))])


def test_worker_is_built_from_settings_without_touching_kafka(tmp_path: Any) -> None:
    from pipeline.settings import load_settings
    from processors.redact_agent import AGENT_NAME
    from processors.worker import build_worker

    settings = load_settings(
        worker={"app_id": "unit-worker", "processing_guarantee": "at_least_once",
                "max_event_bytes": 2 * 1024 * 1024, "commit_interval_ms": 250},
        stack={"dir": str(tmp_path)},
    )
    _worker, app = build_worker(settings)
    assert app.conf.id == "unit-worker"
    assert str(app.conf.processing_guarantee.value) == "at_least_once"
    assert app.conf.broker_commit_interval == 0.25
    assert app.conf.producer_max_request_size > 2 * 1024 * 1024
    assert AGENT_NAME in app.agents
    assert app.agents[AGENT_NAME].concurrency == 1


def test_building_an_exactly_once_worker_leaves_faust_transactions_undecided(tmp_path: Any) -> None:
    """Faust caches ``app.in_transaction`` on first read and reads False until the worker runs:
    a read while building would turn an exactly_once worker into a non-transactional one."""
    from pipeline.settings import load_settings
    from processors.worker import build_worker

    settings = load_settings(worker={"app_id": "unit-eos"}, stack={"dir": str(tmp_path)})
    assert settings.worker.processing_guarantee == "exactly_once"
    _worker, app = build_worker(settings)
    assert "in_transaction" not in vars(app)
    app.in_worker = True
    assert app.in_transaction is True


def test_completed_skips_a_rewound_message_only_while_its_transaction_line_lives() -> None:
    from processors.delivery import Completed

    app = _app(True)
    first, second = object(), object()
    app.producer._transaction_producers = {"aw-worker-0-3": first}
    router = OutputRouter(app)
    done = Completed()
    msg = lambda offset: SimpleNamespace(tp=TP("ingest", 3), offset=offset)  # noqa: E731
    for offset in (10, 11, 12):
        assert not done.seen(msg(offset), router)
        done.record(msg(offset), router)
    assert done.seen(msg(11), router) and done.seen(msg(12), router)  # Faust rewound: skip
    assert not done.seen(msg(13), router)
    app.producer._transaction_producers["aw-worker-0-3"] = second  # revoked and re-assigned
    assert not done.seen(msg(11), router)  # the old transaction was abandoned: process again
