"""The one batching Kafka consume loop every sink shares (ClickHouse, archive, ...).

A concrete sink says two things only: how to turn message bytes into a value (``deserialize``)
and how to write a batch (a ``pipeline.sinks.Sink``). This loop does the rest, and the
commit-after-write rule lives here and nowhere else:

* poll with confluent-kafka (auto-commit off), deserialize each message; a message that does
  not deserialize (``ItemError``, or any exception: it is the message's fault, not ours) goes to
  the dead-letter sink and never crashes the loop;
* keep one batch per assigned partition; flush all of them together when ``max_records``
  messages are buffered or the oldest unflushed message is ``max_age_s`` old;
* flush = make the dead letters durable, ``sink.write(batch, reject)``, then commit each
  partition's next offset. Offsets are committed only after the write returned, and
  asynchronously: a synchronous commit waits without bound for the group coordinator, and one
  issued as the broker went away (test_broker_outage.py) never returned, so the loop stopped
  polling, never saw its partitions lost and never rejoined. Failures arrive through the
  ``on_commit`` callback (``commit_reporter``); ``consumer.close()`` waits for the last ones;
* a failed write keeps the batch and its offsets, pauses every assigned partition and retries
  after the ``RetryPolicy`` backoff (``BackpressureError.retry_after`` honoured) while the loop
  keeps polling, so the consumer stays in its group and never spins;
* partitions revoked or lost in a rebalance: their batches are dropped (their offsets were not
  committed, the new owner reads them again) and ``sink.revoke`` is told;
* ``run(stop)`` returns after ``stop`` is set: a last flush (retried until
  ``shutdown_flush_timeout_s``), a commit, ``consumer.close()``, ``sink.close()``;
* group watchdog: a loop that is out of its consumer group (no ``on_assign`` since it
  subscribed or since its last revoke/loss) while Kafka answers and its topic has partitions
  is counted as unassigned; after ``unassigned_timeout_s`` its health turns unhealthy (reason
  ``not_in_group``), after ``rejoin_timeout_s`` it closes its Kafka consumer and subscribes a
  fresh one from ``consumer_factory``. librdkafka has been seen to stay out of its group for
  good after a broker outage that overlapped a synchronous offset commit (docs/reliability.md,
  Findings); an idle member of a group with more members than partitions is *in* its group
  (it gets an empty assignment) and is never flagged.

Usage (a sink's entry point runs this in a thread; health() is safe to call from another)::

    loop = BatchingConsumer(
        name="telemetry_events", consumer=Consumer(consumer_config(kafka, group)),
        topics=[topic], deserialize=serde.decode_event, sink=my_sink,
        dead_letters=KafkaDeadLetters(...), metrics=BatchingMetrics(registry),
        config=BatchingConfig(max_records=20_000, max_age_s=1.0))
    loop.run(stop_event)

Delivery is at-least-once towards the sink: a crash after a write and before its commit hands
the same records to the next owner, with ``Batch.attempt == 1``. Sinks that need exactly-once
effects deduplicate on their side (the ClickHouse sink by staged offsets). The loop relies on
the eager rebalance protocol (confluent-kafka's default strategies): a revoke takes every
partition, and no write is in flight while a callback runs, because callbacks run inside
``consume()`` on this thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumers.dlq import dead_letter_for
from pipeline.errors import DecodeError, ItemError
from pipeline.retry import Backoff, RetryPolicy, retry_after_of
from pipeline.settings import KafkaSettings
from pipeline.sinks import Batch, DeadLetterSink, Record, Sink, TopicPartition

T = TypeVar("T")

log = logging.getLogger(__name__)

Deserializer = Callable[[bytes], T]


class KafkaMessage(Protocol):
    """The part of ``confluent_kafka.Message`` the loop reads."""

    def error(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class KafkaConsumer(Protocol):
    """The part of ``confluent_kafka.Consumer`` the loop uses (``pipeline.testing`` fakes it)."""

    def subscribe(self, topics: list[str], on_assign: Any = ..., on_revoke: Any = ...,
                  on_lost: Any = ...) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Any]: ...
    def commit(self, *, offsets: list[Any], asynchronous: bool) -> Any: ...
    def pause(self, partitions: list[Any]) -> None: ...
    def resume(self, partitions: list[Any]) -> None: ...
    def close(self) -> None: ...


ConsumerFactory = Callable[[], KafkaConsumer]
PartitionCounter = Callable[[KafkaConsumer, str, float], int | None]


def topic_partition_count(consumer: KafkaConsumer, topic: str, timeout_s: float) -> int | None:
    """Partitions of ``topic`` from broker metadata, or None when Kafka does not answer
    (or the client cannot tell): an outage is not a stuck consumer."""
    list_topics = getattr(consumer, "list_topics", None)
    if list_topics is None:
        return None
    try:
        meta = list_topics(topic, timeout=timeout_s).topics.get(topic)
    except (KafkaException, RuntimeError):
        return None
    if meta is None or meta.error is not None:
        return None
    return len(meta.partitions)


def commit_reporter(metrics: BatchingMetrics, name: str) -> Callable[[Any, list[Any]], None]:
    """The consumer's ``on_commit`` callback (runs inside ``consume()``): counts and logs the
    asynchronous commits that failed. The data is written; the next owner of the partitions
    re-reads it and the sink's deduplication (or the archive's at-least-once) absorbs it."""
    failures = metrics.commit_failures.labels(sink=name)

    def on_commit(err: Any, partitions: list[Any]) -> None:
        failed = [p for p in partitions if p.error is not None]
        if err is None and not failed:
            return
        failures.inc()
        log.warning("offset commit failed after a successful write",
                    extra={"sink": name, "error": str(err or failed[0].error),
                           "partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    return on_commit


def consumer_config(kafka: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings for a sink's consumer: manual commits, earliest reset, eager rebalance."""
    conf: dict[str, Any] = {
        **kafka.client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Eager strategies: a revoke takes the whole assignment (see the module docstring).
        "partition.assignment.strategy": "range,roundrobin",
        "session.timeout.ms": 30_000,
        # A write blocked on a slow backend must not cost us the group: inserts time out sooner.
        "max.poll.interval.ms": 300_000,
        "queued.max.messages.kbytes": 65_536,
        "fetch.wait.max.ms": 100,
    }
    conf.update(overrides)
    return conf


@dataclass(frozen=True)
class BatchingConfig:
    max_records: int = 20_000
    """Flush when this many messages are buffered over all partitions."""
    max_age_s: float = 1.0
    """Flush when the oldest unflushed message has waited this long."""
    poll_timeout_s: float = 0.2
    consume_max: int = 5_000
    """Messages asked of one ``consume()`` call."""
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(initial_s=0.5, max_s=30.0, max_attempts=None)
    )
    dlq_flush_timeout_s: float = 10.0
    shutdown_flush_timeout_s: float = 20.0
    stage: str = "sink"
    """Written into dead letters so an analyst knows which component refused the record."""
    unassigned_timeout_s: float = 30.0
    """Out of the group this long while Kafka answers and the topic has partitions: unhealthy.
    Set it to the consumer's session timeout: a normal rebalance ends well within it."""
    rejoin_timeout_s: float | None = 60.0
    """Out of the group this long: replace the Kafka consumer with a fresh one (needs a
    ``consumer_factory``); None never does."""
    group_check_interval_s: float = 2.0
    """While out of the group, how often the topic's partitions are looked up."""
    metadata_timeout_s: float = 2.0
    """Longest one such lookup blocks the loop (it has nothing assigned to poll meanwhile)."""
    stall_timeout_s: float | None = 300.0
    """A loop step (poll, write, commit) running longer than this is unhealthy (loop_stalled):
    a loop blocked inside the Kafka client serves no rebalance and runs no watchdog."""


class BatchingMetrics:
    """Prometheus metrics of every batching consumer in one registry, labelled by ``sink``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter("agentwatch_sink_messages_consumed_total",
                                "Kafka messages read", ["sink"], registry=registry)
        self.written = Counter("agentwatch_sink_records_written_total",
                               "Records handed to a successful sink write", ["sink"], registry=registry)
        self.dead_letters = Counter("agentwatch_sink_dead_letters_total",
                                    "Records sent to the DLQ", ["sink", "kind"], registry=registry)
        self.flushes = Counter("agentwatch_sink_flushes_total", "Successful flushes", ["sink"],
                               registry=registry)
        self.flush_failures = Counter("agentwatch_sink_flush_failures_total",
                                      "Failed flush attempts (kept, retried after a backoff)",
                                      ["sink", "error"], registry=registry)
        self.flush_seconds = Histogram(
            "agentwatch_sink_flush_duration_seconds", "Duration of successful flushes", ["sink"],
            registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_records = Histogram(
            "agentwatch_sink_batch_records", "Records per flushed batch", ["sink"], registry=registry,
            buckets=(1, 10, 100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000))
        self.buffered = Gauge("agentwatch_sink_buffered_records", "Records waiting for a flush",
                              ["sink"], registry=registry)
        self.commit_failures = Counter("agentwatch_sink_commit_failures_total",
                                       "Offset commits that failed after a successful write",
                                       ["sink"], registry=registry)
        self.rebalances = Counter("agentwatch_sink_rebalances_total", "Partition assignment changes",
                                  ["sink", "kind"], registry=registry)
        self.consumer_errors = Counter("agentwatch_sink_consumer_errors_total",
                                       "Error events from the Kafka client", ["sink"],
                                       registry=registry)
        self.unassigned_seconds = Gauge(
            "agentwatch_sink_unassigned_seconds",
            "Seconds the loop has been out of its consumer group while Kafka answers and its "
            "topic has partitions (0 while in the group)", ["sink"], registry=registry)
        self.consumer_recreations = Counter(
            "agentwatch_sink_consumer_recreations_total",
            "Kafka consumers replaced because they stayed out of their group", ["sink"],
            registry=registry)


@dataclass
class _PartitionState(Generic[T]):
    records: list[Record[T]] = field(default_factory=list)
    next_offset: int | None = None
    """Offset to commit after the next flush; None when nothing is pending."""
    first_at: float | None = None


class BatchingConsumer(Generic[T]):
    """See the module docstring. One instance, one thread: ``run`` blocks until ``stop`` is set."""

    def __init__(
        self,
        *,
        name: str,
        consumer: KafkaConsumer,
        topics: Sequence[str],
        deserialize: Deserializer[T],
        sink: Sink[T],
        dead_letters: DeadLetterSink,
        metrics: BatchingMetrics,
        config: BatchingConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        consumer_factory: ConsumerFactory | None = None,
        partition_count: PartitionCounter = topic_partition_count,
    ) -> None:
        self.name = name
        self._consumer = consumer
        self._topics = list(topics)
        self._deserialize = deserialize
        self._sink = sink
        self._dlq = dead_letters
        self._cfg = config or BatchingConfig()
        self._clock = clock
        self._backoff = Backoff(self._cfg.retry, clock=clock)
        self._parts: dict[TopicPartition, _PartitionState[T]] = {}
        self._buffered = 0
        self._attempt = 1
        self._retry_at: float | None = None
        self._paused = False
        self._state = "created"
        self._last_error: str | None = None
        self._m_consumed = metrics.consumed.labels(sink=name)
        self._m_written = metrics.written.labels(sink=name)
        self._m_flushes = metrics.flushes.labels(sink=name)
        self._m_flush_seconds = metrics.flush_seconds.labels(sink=name)
        self._m_batch = metrics.batch_records.labels(sink=name)
        self._m_buffered = metrics.buffered.labels(sink=name)
        self._m_commit_failures = metrics.commit_failures.labels(sink=name)
        self._m_consumer_errors = metrics.consumer_errors.labels(sink=name)
        self._m_unassigned = metrics.unassigned_seconds.labels(sink=name)
        self._m_recreations = metrics.consumer_recreations.labels(sink=name)
        self._metrics = metrics
        self._factory = consumer_factory
        self._partition_count = partition_count
        self._in_group = False
        self._unassigned_since: float | None = None
        """First moment, since leaving the group, that Kafka answered with partitions."""
        self._next_group_check = 0.0
        self._step_started: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._state = "running"
        self._subscribe()
        try:
            while not stop.is_set():
                self._step_started = self._clock()
                self._step()
                self._step_started = None
            self._drain()
        except BaseException:
            self._state = "crashed"
            raise
        finally:
            self._close()
        self._state = "stopped"

    def health(self) -> dict[str, Any]:
        """Alive while the loop runs; a backend outage shows as ``retrying``, not unhealthy:
        restarting the sink would not bring the backend back. Out of the consumer group for
        longer than ``unassigned_timeout_s`` while Kafka answers is unhealthy (``reason``):
        nothing would be loaded again otherwise, and the loop looked alive."""
        unassigned_s = self.unassigned_for_s()
        stuck = unassigned_s >= self._cfg.unassigned_timeout_s
        alive = self._state in ("created", "running")
        reason = None if alive else f"loop {self._state}"
        started, limit = self._step_started, self._cfg.stall_timeout_s
        if alive and started is not None and limit is not None:
            running_s = self._clock() - started
            if running_s >= limit:
                alive = False
                reason = f"loop_stalled: one step has been running for {running_s:.0f} s"
        if alive and stuck:
            reason = (f"not_in_group: no partition assignment for {unassigned_s:.0f} s while "
                      f"{', '.join(self._topics)} has partitions")
        return {
            "healthy": alive and not stuck,
            "reason": reason,
            "in_group": self._in_group,
            "unassigned_s": round(unassigned_s, 1),
            "state": self._state,
            "retrying": self._retry_at is not None,
            "consecutive_failures": self._backoff.failures,
            "last_error": self._last_error,
            "buffered": self._buffered,
            # list() copies in one step: the loop thread may reassign partitions meanwhile.
            "assigned": sorted(f"{t}[{p}]" for t, p in list(self._parts)),
        }

    def unassigned_for_s(self) -> float:
        """Seconds out of the group while Kafka answered with partitions of the topic."""
        since = self._unassigned_since
        return 0.0 if since is None or self._in_group else max(0.0, self._clock() - since)

    # -- the loop ----------------------------------------------------------------------------

    def _step(self) -> None:
        if not self._in_group:
            self._watch_group()
        if self._retry_at is not None and self._clock() >= self._retry_at:
            self._flush()
            return
        # Never fetch past a full batch: batches stay within max_records.
        room = max(1, self._cfg.max_records - self._buffered)
        messages = self._consumer.consume(num_messages=min(self._cfg.consume_max, room),
                                          timeout=self._poll_timeout())
        for message in messages:
            self._take(message)
        if self._retry_at is None and self._due():
            self._flush()

    def _poll_timeout(self) -> float:
        now = self._clock()
        timeout = self._cfg.poll_timeout_s
        if self._retry_at is not None:
            timeout = min(timeout, self._retry_at - now)
        oldest = self._oldest()
        if oldest is not None and self._retry_at is None:
            timeout = min(timeout, oldest + self._cfg.max_age_s - now)
        return max(0.0, timeout)

    def _oldest(self) -> float | None:
        times = [st.first_at for st in self._parts.values() if st.first_at is not None]
        return min(times) if times else None

    def _due(self) -> bool:
        if self._buffered >= self._cfg.max_records:
            return True
        oldest = self._oldest()
        return oldest is not None and self._clock() - oldest >= self._cfg.max_age_s

    def _take(self, message: KafkaMessage) -> None:
        err = message.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            self._m_consumer_errors.inc()
            if err.fatal():
                raise KafkaException(err)
            log.warning("kafka consumer error", extra={"sink": self.name, "error": str(err)})
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return
        st = self._parts.get(TopicPartition(topic, partition))
        if st is None:
            return  # a message of a partition revoked meanwhile: its new owner reads it
        self._m_consumed.inc()
        raw = message.value() or b""
        try:
            value = self._deserialize(raw)
        except ItemError as exc:
            self._dead_letter_raw(message, raw, exc)
        except Exception as exc:  # any decoder failure is this message's fault; never crash
            wrapped = DecodeError(f"{type(exc).__name__}: {exc}")
            self._dead_letter_raw(message, raw, wrapped)
        else:
            st.records.append(Record(topic=topic, partition=partition, offset=offset,
                                     key=message.key(), value=value,
                                     timestamp_ms=message.timestamp()[1], raw=raw))
            self._buffered += 1
            self._m_buffered.set(self._buffered)
        st.next_offset = offset + 1
        if st.first_at is None:
            st.first_at = self._clock()

    def _dead_letter_raw(self, message: KafkaMessage, raw: bytes, exc: ItemError) -> None:
        letter = dead_letter_for(
            topic=message.topic() or "", partition=message.partition() or 0,
            offset=message.offset() or 0, key=message.key(), raw=raw, error=exc,
            stage=self._cfg.stage, raw_is_redacted=False)
        self._dlq.publish(letter, message.key())
        self._metrics.dead_letters.labels(sink=self.name, kind=exc.kind.value).inc()

    def _reject(self, record: Record[Any], exc: ItemError) -> None:
        """Handed to ``Sink.write``: the value decoded, so its bytes are the redacted event."""
        letter = dead_letter_for(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
            raw=record.raw, error=exc, stage=self._cfg.stage, raw_is_redacted=True)
        self._dlq.publish(letter, record.key)
        self._dlq.flush(self._cfg.dlq_flush_timeout_s)
        self._metrics.dead_letters.labels(sink=self.name, kind=exc.kind.value).inc()

    def _flush(self) -> bool:
        pending = {tp: st for tp, st in self._parts.items() if st.next_offset is not None}
        if not pending:
            self._retry_at = None
            return True
        batch: Batch[T] = Batch(
            partitions={tp: list(st.records) for tp, st in pending.items() if st.records},
            attempt=self._attempt,
        )
        started = self._clock()
        try:
            # Undecodable messages are below offsets we are about to commit: DLQ them for good.
            self._dlq.flush(self._cfg.dlq_flush_timeout_s)
            if len(batch):
                self._sink.write(batch, self._reject)
        except Exception as exc:
            self._flush_failed(exc)
            return False
        self._m_flush_seconds.observe(self._clock() - started)
        self._m_flushes.inc()
        self._m_batch.observe(len(batch))
        self._m_written.inc(len(batch))
        self._commit({tp: st.next_offset for tp, st in pending.items() if st.next_offset is not None})
        for st in pending.values():
            self._buffered -= len(st.records)
            st.records, st.next_offset, st.first_at = [], None, None
        self._m_buffered.set(self._buffered)
        self._attempt = 1
        self._retry_at = None
        self._last_error = None
        self._backoff.success()
        self._set_paused(False)
        return True

    def _flush_failed(self, exc: BaseException) -> None:
        wait = self._backoff.failure(retry_after_of(exc))
        if wait is None:  # a bounded policy ran out; a sink still never gives up on its data
            wait = self._cfg.retry.max_s
        self._attempt += 1
        self._retry_at = self._clock() + wait
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._metrics.flush_failures.labels(sink=self.name, error=type(exc).__name__).inc()
        retriable = getattr(exc, "retriable", False)
        log.log(logging.WARNING if retriable else logging.ERROR,
                "sink write failed; batch kept, partitions paused",
                exc_info=None if retriable else exc,
                extra={"sink": self.name, "error": self._last_error, "retry_in_s": round(wait, 3),
                       "attempt": self._attempt - 1, "records": self._buffered})
        self._set_paused(True)

    def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        tps = [KafkaTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        try:
            self._consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            # The data is written; the next owner of these partitions re-reads them and the
            # sink's deduplication (or the archive's at-least-once contract) absorbs it.
            self._m_commit_failures.inc()
            log.warning("offset commit failed after a successful write",
                        extra={"sink": self.name, "error": str(exc)})

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused or not self._parts:
            self._paused = paused and bool(self._parts)
            return
        tps = [KafkaTopicPartition(tp.topic, tp.partition) for tp in self._parts]
        try:
            (self._consumer.pause if paused else self._consumer.resume)(tps)
        except KafkaException as exc:
            log.warning("pause/resume failed", extra={"sink": self.name, "error": str(exc)})
        self._paused = paused

    # -- group watchdog ----------------------------------------------------------------------

    def _subscribe(self) -> None:
        self._consumer.subscribe(self._topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _watch_group(self) -> None:
        """Out of the group: is Kafka there with partitions for us? If so, for how long?"""
        now = self._clock()
        if now < self._next_group_check:
            return
        self._next_group_check = now + self._cfg.group_check_interval_s
        counts = [self._partition_count(self._consumer, topic, self._cfg.metadata_timeout_s)
                  for topic in self._topics]
        if self._in_group:  # a rebalance callback ran inside the lookup
            return
        if not any(counts):  # Kafka away or no partitions yet: not (yet) a stuck consumer
            self._unassigned_since = None
            self._m_unassigned.set(0)
            return
        now = self._clock()
        if self._unassigned_since is None:
            self._unassigned_since = now
        waited = now - self._unassigned_since
        self._m_unassigned.set(waited)
        limit = self._cfg.rejoin_timeout_s
        if limit is not None and self._factory is not None and waited >= limit:
            self._recreate_consumer(waited)

    def _recreate_consumer(self, waited: float) -> None:
        """Replace a consumer that stays out of its group although Kafka is back.

        Only reached with nothing assigned, so no batch and no offset is pending. The old
        client is closed on a helper thread with a bound: a client wedged in its group state
        may never finish closing, and that must not wedge the loop too. Its late rebalance
        callbacks are ignored (they name the old consumer).
        """
        old = self._consumer
        log.error("consumer out of its group although Kafka answers; replacing it",
                  extra={"sink": self.name, "topics": self._topics,
                         "unassigned_s": round(waited, 1),
                         "member_id": _member_id(old)})
        closer = threading.Thread(target=_close_quietly, args=(old, self.name),
                                  name=f"{self.name}-close-stuck-consumer", daemon=True)
        closer.start()
        closer.join(self._cfg.metadata_timeout_s * 5)
        if closer.is_alive():
            log.warning("the replaced consumer did not close in time; left to finish alone",
                        extra={"sink": self.name})
        assert self._factory is not None
        self._consumer = self._factory()
        self._m_recreations.inc()
        self._unassigned_since = None
        self._m_unassigned.set(0)
        self._subscribe()

    # -- rebalance callbacks (run inside consume(), on this thread) ---------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if consumer is not self._consumer and self._factory is not None:
            return  # a replaced consumer, closing on its own thread
        # In the group again (an empty assignment too: more members than partitions).
        self._in_group = True
        self._unassigned_since = None
        self._m_unassigned.set(0)
        self._metrics.rebalances.labels(sink=self.name, kind="assign").inc()
        for p in partitions:
            self._parts.setdefault(TopicPartition(p.topic, p.partition), _PartitionState())
        # A fresh assignment is never paused by us: no batch survives a revoke.
        self._paused = False
        log.info("partitions assigned",
                 extra={"sink": self.name, "partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop(consumer, partitions, "revoke")

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop(consumer, partitions, "lost")

    def _drop(self, consumer: Any, partitions: list[Any], kind: str) -> None:
        if consumer is not self._consumer and self._factory is not None:
            return  # a replaced consumer, closing on its own thread
        if self._in_group:
            self._in_group = False
            self._next_group_check = self._clock() + self._cfg.group_check_interval_s
        self._metrics.rebalances.labels(sink=self.name, kind=kind).inc()
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        dropped = 0
        for tp in tps:
            st = self._parts.pop(tp, None)
            if st is not None:
                dropped += len(st.records)
        self._buffered -= dropped
        self._m_buffered.set(self._buffered)
        self._sink.revoke(tps)
        if not any(st.next_offset is not None for st in self._parts.values()):
            self._retry_at = None
            self._attempt = 1
        if not self._parts:
            self._paused = False
        log.info("partitions %s", "revoked" if kind == "revoke" else "lost",
                 extra={"sink": self.name, "partitions": [f"{t}[{p}]" for t, p in tps],
                        "dropped_records": dropped})

    # -- shutdown ----------------------------------------------------------------------------

    def _drain(self) -> None:
        deadline = self._clock() + self._cfg.shutdown_flush_timeout_s
        while any(st.next_offset is not None for st in self._parts.values()):
            if self._retry_at is not None:
                wait = self._retry_at - self._clock()
                if self._clock() + max(0.0, wait) > deadline:
                    log.warning("shutting down with an unflushed batch; its offsets stay "
                                "uncommitted", extra={"sink": self.name, "records": self._buffered})
                    return
                if wait > 0:
                    time.sleep(wait)
            if self._flush():
                return

    def _close(self) -> None:
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed", extra={"sink": self.name, "error": str(exc)})
        try:
            self._dlq.flush(self._cfg.dlq_flush_timeout_s)
        except Exception as exc:
            log.warning("dead letters not flushed at shutdown",
                        extra={"sink": self.name, "error": str(exc)})
        self._sink.close()


def _member_id(consumer: KafkaConsumer) -> str | None:
    memberid = getattr(consumer, "memberid", None)
    try:
        return str(memberid()) if memberid is not None else None
    except (KafkaException, RuntimeError):
        return None


def _close_quietly(consumer: KafkaConsumer, name: str) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.warning("closing the replaced consumer failed", extra={"sink": name, "error": str(exc)})


__all__ = [
    "BatchingConfig",
    "BatchingConsumer",
    "BatchingMetrics",
    "ConsumerFactory",
    "Deserializer",
    "KafkaConsumer",
    "KafkaMessage",
    "PartitionCounter",
    "commit_reporter",
    "consumer_config",
    "topic_partition_count",
]
