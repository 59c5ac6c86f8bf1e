"""The Faust-facing pieces of the worker without a broker: codec, commit guard, the build."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.serializers import codecs

from pipeline.errors import EncodeError, UnknownSchemaError
from pipeline.model import new_event
from pipeline.serde import AvroSerde
from processors.codec import AvroCodec, avro_codecs
from processors.commit_guard import guard_commits


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
    consumer = SimpleNamespace()
    seen_at_commit: list[Any] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        seen_at_commit.append((ended._txn_manager.state, kwargs.get("start_new_transaction", True)))
        return True

    consumer.commit = commit
    consumer.app = SimpleNamespace(producer=SimpleNamespace(
        _transaction_producers={"a-0-0": ended, "a-0-1": running},
        _trn_locks={"a-0-0": asyncio.Lock()}))
    guard_commits(consumer)
    guard_commits(consumer)  # idempotent: one wrapper, one begin per commit
    await consumer.commit()
    assert (ended.begun, running.begun) == (1, 0)
    assert seen_at_commit == [(TransactionState.IN_TRANSACTION, True)]
    # The ending commit itself is left alone: it is the one that ends them.
    ended._txn_manager.state = TransactionState.READY
    await consumer.commit(start_new_transaction=False)
    assert ended.begun == 1


def test_worker_is_built_from_settings_without_touching_kafka(tmp_path: Any) -> None:
    from pipeline.settings import load_settings
    from processors.aggregates import AGENT_NAME
    from processors.loop_stage import LoopStage
    from processors.replay_agent import AGENT_NAME as REPLAY_AGENT
    from processors.worker import build_worker

    settings = load_settings(
        worker={"app_id": "unit-worker", "processing_guarantee": "at_least_once",
                "max_event_bytes": 2 * 1024 * 1024, "commit_interval_ms": 250},
        stack={"dir": str(tmp_path)},
    )
    worker, app = build_worker(settings)
    assert app.conf.id == "unit-worker"
    assert str(app.conf.processing_guarantee.value) == "at_least_once"
    assert app.conf.broker_commit_interval == 0.25
    assert app.conf.producer_max_request_size > 2 * 1024 * 1024
    # Both stages are services of the worker, not Faust agents, and have no clients yet.
    stages = [s for s in worker.services if isinstance(s, LoopStage)]
    assert [s.stage for s in stages] == ["ingest", "aggregates"]
    assert all(s.snapshot().running is False for s in stages)
    assert set(app.agents) == {REPLAY_AGENT}
    assert AGENT_NAME not in app.agents
    subscribed = {name for a in app.agents.values() for name in a.channel.topics}
    assert subscribed == {settings.topics.replay}


def test_the_faust_runtime_still_runs_the_aggregates_as_an_agent(tmp_path: Any) -> None:
    from pipeline.settings import load_settings
    from processors.aggregates import AGENT_NAME
    from processors.loop_stage import LoopStage
    from processors.worker import build_worker

    settings = load_settings(worker={"app_id": "unit-faust", "aggregates_runtime": "faust"},
                             stack={"dir": str(tmp_path)})
    worker, app = build_worker(settings)
    assert [s.stage for s in worker.services if isinstance(s, LoopStage)] == ["ingest"]
    assert app.agents[AGENT_NAME].concurrency == 1
    subscribed = {name for a in app.agents.values() for name in a.channel.topics}
    assert settings.topics.events in subscribed and settings.topics.ingest not in subscribed


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
