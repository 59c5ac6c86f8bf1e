"""How a batching agent's outputs and its input offsets leave the worker together.

Why not Faust's own exactly-once path: with faust-streaming 0.15.3 on aiokafka 0.14, measured
against Kafka 4.1 (see docs/processors.md), ``topic.send`` from an agent under
``processing_guarantee="exactly_once"`` goes out on the plain, *non-transactional* producer
whenever the output topic is not in the consumer's metadata (any topic the app only writes),
and otherwise on the transactional producer of the *output* partition, not of the input
partition whose offsets commit it; Faust's commit timer can also commit a transaction halfway
through an agent's sends. Faust does start one transactional producer per assigned input
partition and commits offsets through it (``send_offsets_to_transaction``), which is sound.

So this module keeps Faust's producers and commit, and changes the two things that matter:
every output goes through the transactional producer of the input partition it came from, and
a gate keeps any commit (timer, rebalance, shutdown) from running while a batch is between its
first send and its last ack. A commit therefore always covers exactly the outputs of the
offsets it commits; a crash aborts the open transaction (the next owner of the partition fences
it) and the input is processed again from the committed offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import IllegalOperation  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]
from aiokafka.producer.transaction_manager import (  # type: ignore[import-untyped]
    TransactionState,
)
from faust.exceptions import ProducerSendError
from faust.types import TP

_GATE_ATTR = "_agentwatch_commit_gate"

log = logging.getLogger(__name__)

_PARTITIONER = DefaultPartitioner()


class CommitGate:
    """Serialises the consumer's offset commits with the send phase of batching agents.

    Also the place to stop committing altogether: when a batch is interrupted half way (worker
    shutdown, a crash), Faust's ``take()`` still acks the batch as its generator closes, and the
    shutdown commit would then commit offsets whose outputs were never (fully) produced. A
    poisoned gate commits nothing more; the next start resumes from the last good commit.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._poisoned: str | None = None

    @property
    def poisoned(self) -> str | None:
        return self._poisoned

    def poison(self, reason: str) -> None:
        if self._poisoned is None:
            log.warning("no more offset commits in this process: %s", reason)
            self._poisoned = reason

    def install(self, consumer: Any) -> None:
        """Route every ``consumer.commit()`` through the gate; idempotent."""
        if getattr(consumer, _GATE_ATTR, None) is self:
            return
        inner: Callable[..., Awaitable[bool]] = consumer.commit

        @functools.wraps(inner)
        async def commit(*args: Any, **kwargs: Any) -> bool:
            async with self._lock:
                if self._poisoned is not None:
                    return False
                if kwargs.get("start_new_transaction", True):
                    await _reopen_transactions(consumer)
                    return await inner(*args, **kwargs)
                # The shutdown commit. A producer that lost its transaction (seen after
                # rebalances with changelog tables) must not stop the consumer from closing:
                # Faust would leave its thread running and the process would never exit.
                # Skipping is safe: those offsets are simply processed again next time.
                try:
                    return await inner(*args, **kwargs)
                except IllegalOperation as exc:
                    log.warning("shutdown commit skipped: %s", exc)
                    return False

        # Faust's timer, rebalance and shutdown paths all call ``self.commit``: an instance
        # attribute wins over the method for each of them.
        consumer.commit = commit
        setattr(consumer, _GATE_ATTR, self)

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Hold while sending a batch's outputs and acking its inputs; commit after leaving."""
        async with self._lock:
            yield


async def _reopen_transactions(consumer: Any) -> None:
    """Begin a transaction on every transactional producer that ended its own.

    The commit that ends the transactions (revocation, shutdown: ``start_new_transaction=False``)
    leaves the producers outside one until Faust begins them again on the next assignment; a
    timer commit in between (more likely the shorter ``worker.commit_interval_ms`` is) failed
    with ``IllegalOperation: Not in the middle of a transaction`` and crashed the worker
    (seen at shutdown in bench/worker.py with a 100 ms interval). A producer in any other state
    is left to the commit, which reports it as before.
    """
    producer = getattr(getattr(consumer, "app", None), "producer", None)
    producers = getattr(producer, "_transaction_producers", None)
    if not producers:
        return
    locks = getattr(producer, "_trn_locks", {})
    for tid, txn_producer in list(producers.items()):
        manager = getattr(txn_producer, "_txn_manager", None)
        if manager is None or manager.state is not TransactionState.READY:
            continue
        async with locks.get(tid) or contextlib.nullcontext():
            if manager.state is TransactionState.READY:
                await txn_producer.begin_transaction()


class OutputRouter:
    """Sends an output inside the transaction of the input partition it was derived from."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._transactional = bool(app.in_transaction)
        self._tids: dict[TP, str] = {}

    @property
    def transactional(self) -> bool:
        return self._transactional

    def transactional_id(self, source: TP) -> str | None:
        if not self._transactional:
            return None
        tid = self._tids.get(source)
        if tid is None:
            # The same id Faust's TransactionManager starts a producer under for this partition.
            tid = f"{self._app.conf.id}-{self._app.assignor.group_for_topic(source.topic)}-" \
                  f"{source.partition}"
            self._tids[source] = tid
        return tid

    async def send(
        self, topic: str, key: bytes | None, value: bytes, source: TP
    ) -> asyncio.Future[Any]:
        """Queue one message; returns the delivery future (await it before acking the input)."""
        fut: asyncio.Future[Any] = await self._app.producer.send(
            topic, key, value, None, None, None, transactional_id=self.transactional_id(source)
        )
        return fut

    async def send_many(self, outputs: Sequence[Output]) -> list[asyncio.Future[Any]]:
        """Queue a batch's outputs as record batches, one per (producer, topic, partition).

        The per-message path (Faust's ``Producer.send``: a lock, a signal and an aiokafka
        future per message) costs more than validating and redacting the event; aiokafka's
        ``create_batch``/``send_batch`` fills one record batch at a time instead. Partitions are
        chosen by aiokafka's default (murmur2) partitioner on the key, as ``send`` would.
        """
        groups: dict[tuple[str | None, str], list[Output]] = defaultdict(list)
        for out in outputs:
            groups[(self.transactional_id(out.source), out.topic)].append(out)
        futures: list[asyncio.Future[Any]] = []
        for (tid, topic), outs in groups.items():
            producer = self._aiokafka_producer(tid)
            partitions = sorted(await producer.partitions_for(topic))
            by_partition: dict[int, list[Output]] = defaultdict(list)
            for out in outs:
                by_partition[_PARTITIONER(out.key, partitions, partitions)].append(out)
            for partition, records in by_partition.items():
                futures += await _send_records(producer, topic, partition, records)
        return futures

    def producer_token(self, source: TP) -> object:
        """The producer (so the line of transactions) that outputs of ``source`` go through."""
        tid = self.transactional_id(source)
        if tid is None:
            return self._app.producer
        return self._app.producer._transaction_producers.get(tid)

    def _aiokafka_producer(self, tid: str | None) -> Any:
        # Faust's aiokafka driver keeps one aiokafka producer per transactional id (started by
        # its TransactionManager on assignment) and a plain one; faust-streaming is pinned <0.16.
        faust_producer = self._app.producer
        if tid is None:
            return faust_producer._ensure_producer()
        producer = faust_producer._transaction_producers.get(tid)
        if producer is None:
            raise ProducerSendError(f"no transactional producer for {tid} (partition revoked?)")
        return producer


class Completed:
    """The last input offset per partition whose outputs this process has produced, and into
    which transaction; guards against reprocessing after Faust rewinds a partition it keeps.

    On a rebalance Faust seeks every assigned partition back to its committed offset, also the
    ones this worker keeps. Right after a transactional commit that offset can read stale (the
    transaction markers are written asynchronously; aiokafka's offset fetch does not ask for
    stable offsets, KIP-447), and then already committed messages come again (measured: ~1 run
    in 5 of the two-worker test duplicated a few hundred events). A message at or before the
    recorded offset whose transaction is still the same producer's is skipped: either its outputs
    are committed already, or they sit in that producer's open transaction and commit with the
    next offsets. After the producer changed (partition revoked, its transaction abandoned and
    fenced) the message is processed again, as it must be.
    """

    def __init__(self) -> None:
        # The producer object itself, not its id(): a new producer may reuse a freed address.
        self._last: dict[TP, tuple[object, int]] = {}

    def seen(self, message: Any, router: OutputRouter) -> bool:
        last = self._last.get(message.tp)
        return (last is not None and message.offset <= last[1]
                and last[0] is router.producer_token(message.tp))

    def record(self, message: Any, router: OutputRouter) -> None:
        token = router.producer_token(message.tp)
        last = self._last.get(message.tp)
        if last is None or message.offset > last[1] or last[0] is not token:
            self._last[message.tp] = (token, message.offset)


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    source: TP
    """The input partition the message was derived from (decides its transaction)."""


async def _send_records(
    producer: Any, topic: str, partition: int, records: list[Output]
) -> list[asyncio.Future[Any]]:
    futures: list[asyncio.Future[Any]] = []
    batch = producer.create_batch()
    filled = 0
    for out in records:
        if batch.append(key=out.key, value=out.value, timestamp=None) is not None:
            filled += 1
            continue
        if filled:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch, filled = producer.create_batch(), 0
            if batch.append(key=out.key, value=out.value, timestamp=None) is not None:
                filled = 1
                continue
        # Larger than a whole record batch: aiokafka's single-message path takes it.
        futures.append(await producer.send(topic, out.value, key=out.key, partition=partition))
    if filled:
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures

