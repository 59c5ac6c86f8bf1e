"""The worker's first stage as a consume-transform-produce loop on librdkafka: ingest -> events/dlq.

Why not a Faust agent (it was one until 2026-11-27, see docs/worker.md): Faust's per-message
path (aiokafka record parsing, conductor, stream, event and ack bookkeeping) cost ~180 us of CPU
per message before any work was done, twice the validation and redaction themselves, and every
exactly-once fix the stage needed (outputs in the input partition's transaction, commits gated
against half-sent batches, stale offsets after a rebalance) was a patch over Faust's consumer
bookkeeping. librdkafka fetches and parses in its own threads, and its transactional producer
with ``send_offsets_to_transaction`` and the consumer group's metadata (KIP-447) is the
textbook exactly-once loop:

    consume a batch -> process every message (pure) -> begin a transaction -> produce the
    outputs -> add the batch's next offsets to the transaction -> commit

One transaction per batch, never open while ``consume()`` runs: rebalance callbacks run inside
``consume()`` on this thread, so a revocation never finds an open transaction, and a new
owner's offset fetch waits for pending transactional offsets (``require_stable``, which
librdkafka asks for under ``read_committed``). An abortable error aborts the transaction and
seeks every assigned partition back to its committed offset, so the batch is processed again;
a retriable one retries the same call; anything fatal (this producer fenced by another process
with the same transactional id) stops the loop and the worker with it.

With a pool of processes (``worker.processes``) and a backlog, a full batch's transaction
waits until the next batch has been read and handed to the pool, so the pool works while the
loop waits on the broker's round trips; a rebalance or a rewind in between drops the waiting
batch unproduced (its offsets were never committed).

Batches form by themselves: the loop blocks for the first message, then takes whatever else is
already fetched (up to ``batch_max``) without waiting, so an idle pipeline commits each event
within a few milliseconds and a loaded one amortises a transaction over hundreds of messages.

``at_least_once`` uses a plain idempotent producer: outputs are flushed, then the offsets
committed (asynchronously, a synchronous commit can hang while the broker is away); a crash in
between repeats the batch and the sinks' idempotence on event_id hides it.

Runs on a thread of its own (processors/ingest_stage.py); ``snapshot()`` is safe from others.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from pipeline.errors import TransientError
from processors.deadletters import SourceMeta
from processors.kafka_calls import (
    RETRY_PAUSE_S,
    AbortError,
    BlockingCalls,
    LoopSnapshot,
    RetryError,
    StageFailedError,
    classify,
    fatal_only,
)
from processors.metrics import WorkerMetrics
from processors.pool import ProcessingPool
from processors.validate import CleanEvent, EventProcessor, Outcome

log = logging.getLogger(__name__)

_RETRY_PAUSE_S = RETRY_PAUSE_S


@dataclass(frozen=True)
class IngestLoopConfig:
    ingest_topic: str
    events_topic: str
    dlq_topic: str
    transactional: bool
    """exactly_once: outputs and input offsets in one transaction per batch."""
    batch_max: int = 2000
    """Most messages taken into one batch (one transaction)."""
    poll_timeout_s: float = 0.05
    """Longest one wait for the first message of a batch; also how soon a stop is noticed."""
    min_batch_interval_s: float = 0.0
    """A batch keeps gathering messages until this long after the previous one was taken."""
    call_timeout_s: float = 10.0
    """Timeout of one transactional call; a retriable timeout is retried while the loop runs."""
    stall_after_s: float = 60.0
    """A single Kafka call blocked longer than this (past its own timeout) marks the stage
    stalled in its health: librdkafka has calls that can hang (see _renew_producer)."""


@dataclass(frozen=True)
class _Processed:
    batch: list[Any]
    outcomes: list[Outcome]
    started: float
    generation: int


class IngestLoop:
    """One consumer and one producer driven by one thread; see the module docstring."""

    def __init__(
        self,
        consumer: Consumer,
        producer_factory: Callable[[], Producer],
        processor: EventProcessor,
        config: IngestLoopConfig,
        metrics: WorkerMetrics,
        *,
        pool: ProcessingPool | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._consumer = consumer
        self._new_producer = producer_factory
        self._producer = producer_factory()
        self._renew = False
        """exactly_once: make a fresh producer before the next transaction (see _renew_producer)."""
        self._calls = BlockingCalls(_RETRY_PAUSE_S)
        self._generation = 0
        """Bumped by every assignment change and rewind; a batch read before one is dropped."""
        self._last_batch = 0.0
        self._held: _Processed | None = None
        """A processed full batch whose transaction waits for the next batch to be submitted."""
        self._processor = processor
        self._pool = pool
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._assigned: tuple[tuple[str, int], ...] = ()
        self._running = False
        self._failure: str | None = None
        self._delivery_errors: list[str] = []

    def snapshot(self) -> LoopSnapshot:
        blocked = self._calls.blocked_s()
        return LoopSnapshot(self._running, self._assigned, self._failure, blocked,
                            blocked > self._config.stall_after_s)

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set; raises ``StageFailedError`` when it cannot go on."""
        self._running = True
        try:
            if self._config.transactional:
                self._retrying(stop, "init_transactions",
                               lambda: self._producer.init_transactions(self._config.call_timeout_s))
            self._consumer.subscribe(
                [self._config.ingest_topic], on_assign=self._on_assign,
                on_revoke=self._on_revoke, on_lost=self._on_revoke,
            )
            while not stop.is_set():
                batch = self._next_batch(block=self._held is None)
                if batch or self._held is not None:
                    self._step(batch, stop)
                elif not self._config.transactional:
                    self._producer.poll(0)
            # Stopping: what is processed already is committed, not read again by the next owner.
            held, self._held = self._held, None
            if held is not None:
                self._commit(held, stop)
        except StageFailedError as exc:
            self._failure = str(exc)
            raise
        finally:
            self._running = False
            self._close()

    # -- one batch -------------------------------------------------------------------------

    def _next_batch(self, *, block: bool = True) -> list[Any]:
        """The next batch: waits for its first message (unless ``block`` is false: a processed
        batch is waiting for its commit), then gathers until the batch is full or
        ``min_batch_interval_s`` has passed since the previous batch was taken.

        The gathering is what keeps transactions from getting tiny at moderate rates: each one
        writes a commit marker to every events partition it touched, and the aggregates'
        reader (aiokafka, read_committed) pays per record batch; at 1,000 events/s with one
        transaction per poll it fell behind (docs/benchmarks.md). A rebalance while gathering
        drops what was gathered before it (see _read): none of it is produced yet, and
        partitions no longer ours must not be committed; the new owner reads them from the
        committed offsets.
        """
        if block:
            messages, _ = self._read(lambda: _listed(self._consumer.poll(self._config.poll_timeout_s)))
        else:
            messages, _ = self._read(functools.partial(
                self._consumer.consume, num_messages=self._config.batch_max, timeout=0))
        if not messages:
            return []
        deadline = self._last_batch + self._config.min_batch_interval_s
        while len(messages) < self._config.batch_max:
            wait = max(0.0, deadline - time.monotonic())
            room = self._config.batch_max - len(messages)
            more, changed = self._read(
                functools.partial(self._consumer.consume, num_messages=room, timeout=wait))
            # Across a rebalance, what was gathered before is stale: those partitions are
            # another worker's now, or ours again from their committed offsets.
            messages = more if changed else messages + more
            if time.monotonic() >= deadline:
                break
        self._last_batch = time.monotonic()
        batch = []
        for message in messages:
            err = message.error()
            if err is None:
                batch.append(message)
            elif err.fatal():
                raise StageFailedError(f"consumer: {err.str()}")
            elif err.code() != KafkaError._PARTITION_EOF:
                # Broker away, rebalance in progress...: librdkafka recovers by itself.
                log.warning("ingest consumer error", extra={"error": err.str()})
        return batch

    def _read(self, call: Callable[[], list[Any]]) -> tuple[list[Any], bool]:
        """What one poll()/consume() returned, and whether the assignment changed inside it.

        The rebalance callbacks run inside the call, and what it returns after them must be
        kept: librdkafka moved its position past those messages, so dropping them would skip
        them (CI lost three events that way, 2026-11-27). They are messages of the new
        assignment, read from the committed offsets: messages of a revoked partition fetched
        earlier are discarded by librdkafka (the partition's version barrier) or, if the call
        returned before the barrier reached the queue, filtered out here as not ours.
        """
        generation = self._generation
        messages = call()
        if generation == self._generation:
            return messages, False
        ours = set(self._assigned)
        return [m for m in messages
                if m.error() is not None or (m.topic(), m.partition()) in ours], True

    def _step(self, batch: list[Any], stop: threading.Event) -> None:
        """Start processing ``batch``, commit the held batch meanwhile, then commit or hold this one.

        Holding a full batch (a backlog: more is already fetched) until the next one is in the
        pool's hands keeps the pool busy while the loop waits on the transaction's round trips;
        without it the pool idled through every commit (docs/benchmarks.md). The held batch is
        committed before anything else is consumed but the next batch, and no transaction is
        open while consume() runs the rebalance callbacks; a rebalance there (or a rewind) makes
        the held batch stale, and it is dropped unproduced: its offsets were never committed.
        """
        started = self._clock()
        generation = self._generation
        collect = self._submit(batch) if batch else None
        held, self._held = self._held, None
        if held is not None:
            self._commit(held, stop)
        if collect is None:
            return
        try:
            outcomes = self._collect(collect)
        except TransientError as exc:
            # Nothing produced yet: read the batch again once the dependency (a schema registry)
            # answers; the rewind pauses first.
            self._rewind(f"transient: {exc}")
            return
        done = _Processed(batch, outcomes, started, generation)
        if self._pool is not None and len(batch) >= self._config.batch_max:
            self._held = done
            self._metrics.batches_held.inc()
        else:
            self._commit(done, stop)

    def _commit(self, done: _Processed, stop: threading.Event) -> None:
        if done.generation != self._generation:
            log.info("processed batch dropped: the assignment changed or the stage rewound",
                     extra={"messages": len(done.batch)})
            return
        offsets = _next_offsets(done.batch)
        committed = (self._in_transaction(done.outcomes, offsets, stop)
                     if self._config.transactional
                     else self._at_least_once(done.outcomes, offsets, stop))
        if not committed:
            return
        self._metrics.batch_seconds.observe(self._clock() - done.started)
        self._metrics.batch_size.observe(len(done.batch))
        _count(self._metrics, done.outcomes)

    def _submit(self, batch: list[Any]) -> Callable[[], list[Outcome]]:
        items = [(m.value() or b"", SourceMeta(m.topic(), m.partition(), m.offset(), m.key()))
                 for m in batch]
        if self._pool is None:
            processor = self._processor
            return lambda: [processor.process(raw, meta) for raw, meta in items]
        try:
            return self._pool.submit(items)
        except BrokenProcessPool as exc:
            raise StageFailedError(f"a processing pool process died: {exc}") from exc

    @staticmethod
    def _collect(collect: Callable[[], list[Outcome]]) -> list[Outcome]:
        try:
            return collect()
        except BrokenProcessPool as exc:
            raise StageFailedError(f"a processing pool process died: {exc}") from exc

    def _in_transaction(self, outcomes: Sequence[Outcome], offsets: list[TopicPartition],
                        stop: threading.Event) -> bool:
        if self._renew:
            self._renew_producer(stop)
        producer = self._producer
        try:
            self._retrying(stop, "begin_transaction", producer.begin_transaction)
            self._produce_all(outcomes, None)
            self._retrying(stop, "send_offsets_to_transaction",
                           lambda: producer.send_offsets_to_transaction(
                               offsets, self._consumer.consumer_group_metadata(),
                               self._config.call_timeout_s))
            self._retrying(stop, "commit_transaction",
                           lambda: producer.commit_transaction(self._config.call_timeout_s))
        except AbortError as exc:
            self._abort(str(exc))
            return False
        self._metrics.transactions.labels("committed").inc()
        return True

    def _at_least_once(self, outcomes: Sequence[Outcome], offsets: list[TopicPartition],
                       stop: threading.Event) -> bool:
        self._delivery_errors.clear()
        try:
            self._produce_all(outcomes, self._on_delivery)
        except AbortError as exc:
            self._rewind(str(exc))
            return False
        while self._producer.flush(self._config.call_timeout_s) > 0:
            if stop.is_set():
                self._rewind("stopped before the batch was delivered")
                return False
        if self._delivery_errors:
            self._rewind(f"delivery failed: {self._delivery_errors[0]}")
            return False
        self._consumer.commit(offsets=offsets, asynchronous=True)
        return True

    def _produce_all(self, outcomes: Sequence[Outcome], on_delivery: Any) -> None:
        events, dlq = self._config.events_topic, self._config.dlq_topic
        for outcome in outcomes:
            topic = events if isinstance(outcome, CleanEvent) else dlq
            while True:
                try:
                    self._producer.produce(topic, outcome.value, outcome.key, on_delivery=on_delivery)
                    break
                except BufferError:
                    # The local queue is full: let librdkafka send some, then try again.
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    failure = classify(exc, "produce")
                    if not isinstance(failure, RetryError):
                        raise failure from exc
                    self._producer.poll(_RETRY_PAUSE_S)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(str(err))

    # -- errors ------------------------------------------------------------------------------

    def _renew_producer(self, stop: threading.Event) -> None:
        """A fresh transactional producer (same transactional id) after the group changed.

        librdkafka 2.16's ``send_offsets_to_transaction`` can block past its timeout, for good,
        once the group coordinator it cached went away (a broker restart; librdkafka issue 5511,
        seen here as the broker-outage reliability test's worker stuck after the broker came
        back). A producer made after the rejoin looks the coordinator up afresh; its
        ``init_transactions`` bumps the epoch, fencing whatever the old one left open. Nothing is
        open here: transactions end before the next poll, and callbacks run inside it.
        """
        self._renew = False
        self._producer.purge()
        self._producer.flush(0)
        self._producer = self._new_producer()
        self._retrying(stop, "init_transactions",
                       lambda: self._producer.init_transactions(self._config.call_timeout_s))
        log.info("transactional producer renewed")

    def _retrying(self, stop: threading.Event, what: str, call: Callable[[], None]) -> None:
        self._calls.run(stop, what, call)

    def _abort(self, reason: str) -> None:
        log.warning("transaction aborted; the batch will be processed again",
                    extra={"reason": reason})
        self._metrics.transactions.labels("aborted").inc()
        self._renew = True
        try:
            self._producer.abort_transaction(self._config.call_timeout_s)
        except KafkaException as exc:
            failure = classify(exc, "abort_transaction")
            if not isinstance(failure, RetryError):
                raise StageFailedError(str(failure)) from exc
            # Not answered in time: the coordinator aborts it after transaction.timeout.ms, and
            # the next begin_transaction fails until then; the next batch's abort retries.
            log.warning("abort not confirmed", extra={"error": exc.args[0].str()})
        self._rewind(reason)

    def _rewind(self, reason: str) -> None:
        """Every assigned partition back to its committed offset (the batch comes again).

        Retried until the group coordinator answers: moving on without the rewind would skip
        the batch. A pause first, so a failure that repeats (broker away) does not spin.
        """
        self._metrics.rewinds.inc()
        self._generation += 1  # whatever was read past the committed offsets is stale now
        while True:
            time.sleep(_RETRY_PAUSE_S)
            assigned = self._consumer.assignment()
            if not assigned:
                return
            try:
                committed = self._consumer.committed(assigned, self._config.call_timeout_s)
                for tp in committed:
                    if tp.offset < 0:
                        tp.offset = OFFSET_BEGINNING
                    self._consumer.seek(tp)
            except KafkaException as exc:
                fatal = fatal_only(exc, "rewind")
                if fatal is not None:
                    raise fatal from exc
                log.warning("rewind failed; retrying", extra={"error": str(exc)})
                continue
            log.info("rewound to the committed offsets",
                     extra={"reason": reason, "partitions": len(assigned)})
            return

    # -- group membership --------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._generation += 1
        self._assigned = tuple(sorted((tp.topic, tp.partition) for tp in partitions))
        self._metrics.assigned_partitions.set(len(partitions))
        log.info("ingest partitions assigned", extra={"partitions": [p for _, p in self._assigned]})

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # No transaction is open here: callbacks run inside poll()/consume(), between batches.
        self._generation += 1
        self._assigned = ()
        self._renew = self._config.transactional
        self._metrics.assigned_partitions.set(0)
        log.info("ingest partitions revoked", extra={"partitions": [tp.partition for tp in partitions]})

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("ingest consumer close failed", extra={"error": str(exc)})
        if not self._config.transactional:
            self._producer.flush(self._config.call_timeout_s)


def _listed(message: Any) -> list[Any]:
    return [] if message is None else [message]


def _next_offsets(batch: Sequence[Any]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in batch:
        key = (m.topic(), m.partition())
        if m.offset() >= last.get(key, -1):
            last[key] = m.offset()
    return [TopicPartition(topic, partition, offset + 1)
            for (topic, partition), offset in sorted(last.items())]


def _count(metrics: WorkerMetrics, outcomes: Sequence[Outcome]) -> None:
    events = truncated = redacted = 0
    for outcome in outcomes:
        if isinstance(outcome, CleanEvent):
            events += 1
            truncated += len(outcome.truncated)
            redacted += outcome.redacted
        else:
            metrics.dead_letters.labels(outcome.kind.value).inc()
    metrics.messages.labels("event").inc(events)
    metrics.messages.labels("dead_letter").inc(len(outcomes) - events)
    metrics.truncated_fields.inc(truncated)
    metrics.redacted_fields.inc(redacted)
