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
