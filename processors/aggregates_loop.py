"""The aggregates as a librdkafka loop: events -> widget and pattern state -> widgets, patterns, changelogs.

Why not a Faust agent (it was one until 2026-11-27, see docs/worker.md): the same folds behind
librdkafka do 23,000-32,000 events per CPU-second (bench/aggregate_ceiling.py), behind Faust's
per-message path ~4,400; the first stage left Faust for the same reason. The folds themselves
(``WidgetProcessor``, ``PatternProcessor``) are unchanged, over in-memory tables
(processors/state_store.py) whose only durable copy is their changelog topics.

One thread, one consumer (group ``<app_id>-aggregates``, eager assignment), two producers:

- widget updates go out through a plain idempotent producer as soon as the coalescer says they
  are due, so the dashboard's delay never waits for a transaction (updates are at-least-once,
  as before: the sequence numbers let a client notice a gap, and a restart skips numbers);
- a checkpoint (every ``checkpoint_interval_s``, after ``checkpoint_max_events`` events, before
  a revocation and at stop) writes every touched state to its changelog, the alerts raised
  since the last one, and the events' next offsets, in one transaction under exactly_once
  (under at_least_once: produce, flush, then commit the offsets). Before it commits, the widget
  updates sent so far are confirmed, so a committed state never records as sent an update that
  was lost.

State recovery, on every assignment: first the assigned partitions' committed offsets are
fetched, which under ``read_committed`` waits for a previous owner's pending transaction
(KIP-447); only then is each changelog partition read to its end. A changelog record and the
offsets of the events folded into it commit together, so the state read is exactly the state at
the committed offsets. A transaction that aborts (or an update that is not delivered) resets
the same way: state reloaded from the changelogs, partitions sought back to their committed
offsets, events folded again.

A timer-less design: the loop's consume timeout is bounded by the next due widget update, so an
update is sent within a millisecond or so of its coalescing interval ending, and the stall check
and checkpoints run between two consume calls.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.errors import DecodeError, TransientError
from pipeline.model import PATTERN_ALERT, TELEMETRY_EVENT, WIDGET_UPDATE
from pipeline.serde import AvroSerde
from processors.changelog_recovery import StoppedError, read_to_end
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
from processors.patterns.agent import PatternMetrics
from processors.patterns.processor import PatternProcessor
from processors.state_store import ChangelogRecord, MemoryStore
from processors.widgets.agent import WidgetMetrics
from processors.widgets.processor import WidgetProcessor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AggregatesLoopConfig:
    events_topic: str
    widgets_topic: str
    patterns_topic: str
    transactional: bool
    """exactly_once: changelog records, alerts and input offsets in one transaction per checkpoint."""
    batch_max: int = 2000
    """Most events taken by one consume call."""
    poll_timeout_s: float = 0.05
    """Longest one consume call waits when no widget update is due sooner; also how soon a stop
    is noticed."""
    checkpoint_interval_s: float = 1.0
    checkpoint_max_events: int = 20_000
    stall_check_interval_s: float = 15.0
    call_timeout_s: float = 10.0
    """Timeout of one blocking Kafka call; a retriable timeout is retried while the loop runs."""
    stall_after_s: float = 60.0
    """A single Kafka call blocked longer than this marks the stage stalled in its health."""


class AggregatesMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # The same series as the Faust runtime's (processors/widgets/agent.py, patterns/agent.py).
        self.widgets = WidgetMetrics(r)
        self.patterns = PatternMetrics(r)
        self.undecodable = Counter(
            "agentwatch_aggregates_undecodable",
            "Records of the events topic that are not a TelemetryEvent (skipped, logged).", registry=r)
        self.checkpoints = Counter(
            "agentwatch_aggregates_checkpoints",
            "Checkpoints (states, alerts and offsets committed together), by outcome.",
            ["outcome"], registry=r)
        self.checkpoint_seconds = Histogram(
            "agentwatch_aggregates_checkpoint_seconds",
            "Persist the touched states, confirm the updates, commit states, alerts and offsets.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r)
        self.resets = Counter(
            "agentwatch_aggregates_resets",
            "Checkpoints given up: state reloaded from the changelogs and the events folded "
            "again from the committed offsets.", registry=r)
        self.recovered = Counter("agentwatch_aggregates_recovered_states",
                                 "Session states read back from the changelogs.", registry=r)
        self.recovery_seconds = Histogram(
            "agentwatch_aggregates_recovery_seconds",
            "Wait for the committed offsets, then read the changelog partitions to their end.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=r)
        self.assigned = Gauge("agentwatch_aggregates_assigned_partitions",
                              "Events partitions assigned to this worker's aggregates.", registry=r)


@dataclass(frozen=True)
class LoopClients:
    consumer: Consumer
    """Subscribes to the events topic (group ``<app_id>-aggregates``)."""
    producer_factory: Callable[[], Producer]
    """Changelog records and alerts (transactional under exactly_once); called again to renew."""
    updates: Producer
    """Widget updates: plain and idempotent, never waits for a checkpoint."""
    recovery: Consumer
    """Reads changelog partitions to their end (processors/changelog_recovery.py)."""


@dataclass(frozen=True)
class Folds:
    widgets: WidgetProcessor
    widget_store: MemoryStore
    patterns: PatternProcessor
    pattern_store: MemoryStore


class _ResetError(Exception):
    """The checkpoint cannot commit; the state must be reloaded and the events folded again."""


class AggregatesLoop:
    """One consumer, two producers and the two folds, driven by one thread."""

    def __init__(
        self, clients: LoopClients, folds: Folds, serde: AvroSerde, config: AggregatesLoopConfig,
        metrics: AggregatesMetrics, *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = clients.consumer
        self._new_producer = clients.producer_factory
        self._producer = clients.producer_factory()
        self._updates = clients.updates
        self._recovery = clients.recovery
        self._widgets, self._widget_store = folds.widgets, folds.widget_store
        self._patterns, self._pattern_store = folds.patterns, folds.pattern_store
        self._serde = serde
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._calls = BlockingCalls(RETRY_PAUSE_S)
        self._stop = threading.Event()
        self._renew = False
        self._owned: set[int] = set()
        self._next: dict[int, int] = {}
        """Events partition -> offset after the last event folded in."""
        self._committed: dict[int, int] = {}
        self._alerts: list[ChangelogRecord] = []
        """Alerts raised since the last checkpoint, encoded (they commit with it)."""
        self._held = 0
        """Events folded since the last checkpoint."""
        self._last_checkpoint = clock()
        self._next_stall_check = clock() + config.stall_check_interval_s
        self._update_errors: list[str] = []
        self._running = False
        self._failure: str | None = None

    # -- health ------------------------------------------------------------------------------

    def snapshot(self) -> LoopSnapshot:
        blocked = self._calls.blocked_s()
        assigned = tuple((self._config.events_topic, p) for p in sorted(self._owned))
        return LoopSnapshot(self._running, assigned, self._failure, blocked,
                            blocked > self._config.stall_after_s)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Fold until ``stop`` is set; raises ``StageFailedError`` when it cannot go on."""
        self._stop = stop
        self._running = True
        try:
            if self._config.transactional:
                self._calls.run(stop, "init_transactions",
                                lambda: self._producer.init_transactions(self._config.call_timeout_s))
            self._consumer.subscribe([self._config.events_topic], on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_lost)
            while not stop.is_set():
                messages = self._consumer.consume(self._config.batch_max, self._wait_s())
                self._fold_all(messages)
                self._send_due()
                now = self._clock()
                if now >= self._next_stall_check:
                    self._next_stall_check = now + self._config.stall_check_interval_s
                    self._check_stalls()
                if self._checkpoint_due(now):
                    self._checkpoint()
                self._updates.poll(0)
            # Stopping: what is folded already is committed, not folded again by the next owner.
            self._checkpoint()
        except StageFailedError as exc:
            self._failure = str(exc)
            raise
        finally:
            self._running = False
            self._close()

    def _wait_s(self) -> float:
        wait = self._config.poll_timeout_s
        due = self._widgets.coalescer.next_due_in()
        return wait if due is None else max(0.0, min(wait, due))

    def _fold_all(self, messages: list[Any]) -> None:
        widgets, patterns, owned = self._widgets, self._patterns, self._owned
        metrics = self._metrics
        decode = self._serde.decode
        folded = skipped = 0
        pattern_skipped = patterns.skipped
        for message in messages:
            err = message.error()
            if err is not None:
                if err.fatal():
                    raise StageFailedError(f"consumer: {err.str()}")
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("aggregates consumer error", extra={"error": err.str()})
                continue
            partition, offset = message.partition(), message.offset()
            if partition not in owned:
                # Fetched before a revocation whose barrier had not reached the queue yet.
                continue
            self._next[partition] = offset + 1
            self._held += 1
            try:
                name, event = decode(message.value() or b"")
                if name != TELEMETRY_EVENT:
                    raise DecodeError(f"expected a TelemetryEvent, got a {name}")
            except DecodeError as exc:
                # Only the first stage writes this topic, after validation; anything else here
                # is a foreign writer's. Its bytes never reach a log: they skipped the redactor.
                metrics.undecodable.inc()
                log.warning("undecodable record on the events topic skipped",
                            extra={"partition": partition, "offset": offset, "error": str(exc)})
                continue
            except TransientError as exc:
                # A schema registry that does not answer: fold the record again later.
                self._reset(f"transient: {exc}")
                return
            if widgets.fold(partition, offset, event):
                folded += 1
            else:
                skipped += 1
            self._queue_alerts(patterns.fold(partition, offset, event))
        metrics.widgets.events.inc(folded)
        metrics.widgets.skipped.inc(skipped)
        metrics.patterns.skipped.inc(patterns.skipped - pattern_skipped)

    def _queue_alerts(self, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            self._alerts.append(ChangelogRecord(
                self._config.patterns_topic, -1, alert["session_id"].encode(),
                self._serde.encode(PATTERN_ALERT, alert)))
            self._metrics.patterns.alerts.labels(alert["pattern"]).inc()

    def _send_due(self) -> None:
        due = self._widgets.flush(self._owned)
        for out in due:
            _produce(self._updates, self._config.widgets_topic, out.key,
                     self._serde.encode(WIDGET_UPDATE, out.value), partition=out.partition,
                     on_delivery=self._on_update)
            self._metrics.widgets.updates.labels(out.value["widget"]).inc()
        self._metrics.widgets.pending.set(self._widgets.coalescer.pending())

    def _on_update(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._update_errors.append(str(err))

    def _check_stalls(self) -> None:
        alerts = self._patterns.check_stalls(self._owned)
        if alerts:
            log.info("stalled sessions", extra={"sessions": [a["session_id"] for a in alerts]})
        self._queue_alerts(alerts)
        self._metrics.patterns.live.set(self._patterns.live_sessions())

    # -- checkpoints -------------------------------------------------------------------------

    def _checkpoint_due(self, now: float) -> bool:
        if self._held >= self._config.checkpoint_max_events:
            return True
        return now - self._last_checkpoint >= self._config.checkpoint_interval_s

    def _checkpoint(self, *, reset: bool = True) -> None:
        """Commit every touched state, the queued alerts and the folded events' offsets.

        A checkpoint that cannot commit resets the state (``reset``), unless the partitions are
        being given up anyway (a revocation): then the next owner folds the events again."""
        started = time.perf_counter()
        self._last_checkpoint = self._clock()
        owned = self._owned
        self._widgets.persist(owned)
        self._patterns.persist(owned)
        records = [*self._widget_store.take(), *self._pattern_store.take(), *self._alerts]
        self._alerts = []
        offsets = [TopicPartition(self._config.events_topic, p, o) for p, o in sorted(self._next.items())
                   if p in owned and self._committed.get(p) != o]
        held, self._held = self._held, 0
        if not records and not offsets:
            return
        try:
            self._confirm_updates()
            if self._config.transactional:
                self._in_transaction(records, offsets)
            else:
                self._at_least_once(records, offsets)
        except _ResetError as exc:
            self._metrics.checkpoints.labels("aborted").inc()
            if reset:
                self._reset(str(exc))
            else:
                log.warning("checkpoint before a revocation not committed",
                            extra={"reason": str(exc)})
            return
        for tp in offsets:
            self._committed[tp.partition] = tp.offset
        self._metrics.checkpoints.labels("committed").inc()
        self._metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        log.debug("checkpoint", extra={"events": held, "records": len(records)})

    def _confirm_updates(self) -> None:
        """Every widget update sent so far is delivered: the states about to commit record them
        as sent (their pending lists no longer hold them)."""
        while self._updates.flush(self._config.call_timeout_s) > 0:
            if self._stop.is_set():
                raise _ResetError("stopped before the widget updates were delivered")
        if self._update_errors:
            first, self._update_errors = self._update_errors[0], []
            raise _ResetError(f"widget update not delivered: {first}")

    def _in_transaction(self, records: list[ChangelogRecord], offsets: list[TopicPartition]) -> None:
        if self._renew:
            try:
                self._renew_producer()
            except AbortError as exc:  # stopping while the new producer could not init
                self._renew = True
                raise _ResetError(str(exc)) from exc
        producer, stop, timeout = self._producer, self._stop, self._config.call_timeout_s
        try:
            self._calls.run(stop, "begin_transaction", producer.begin_transaction)
            for r in records:
                _produce(producer, r.topic, r.key, r.value, partition=r.partition)
            if offsets:
                self._calls.run(stop, "send_offsets_to_transaction",
                                lambda: producer.send_offsets_to_transaction(
                                    offsets, self._consumer.consumer_group_metadata(), timeout))
            self._calls.run(stop, "commit_transaction", lambda: producer.commit_transaction(timeout))
        except AbortError as exc:
            self._abort()
            raise _ResetError(str(exc)) from exc

    def _at_least_once(self, records: list[ChangelogRecord], offsets: list[TopicPartition]) -> None:
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            for r in records:
                _produce(self._producer, r.topic, r.key, r.value, partition=r.partition,
                         on_delivery=on_delivery)
        except AbortError as exc:
            raise _ResetError(str(exc)) from exc
        while self._producer.flush(self._config.call_timeout_s) > 0:
            if self._stop.is_set():
                raise _ResetError("stopped before the checkpoint was delivered")
        if errors:
            raise _ResetError(f"checkpoint not delivered: {errors[0]}")
        if offsets:
            # Asynchronous: a synchronous commit can hang while the broker is away; one that is
            # lost repeats events the replay guard skips.
            self._consumer.commit(offsets=offsets, asynchronous=True)

    def _abort(self) -> None:
        self._renew = True
        try:
            self._producer.abort_transaction(self._config.call_timeout_s)
        except KafkaException as exc:
            failure = classify(exc, "abort_transaction")
            if not isinstance(failure, RetryError):
                raise StageFailedError(str(failure)) from exc
            # Not confirmed in time: the coordinator aborts it after transaction.timeout.ms; the
            # renewed producer's init_transactions fences it meanwhile.
            log.warning("abort not confirmed", extra={"error": exc.args[0].str()})

    def _renew_producer(self) -> None:
        """A fresh transactional producer (same id) after an abort or a group change: see
        processors/ingest_loop.py ``_renew_producer`` (librdkafka issue 5511)."""
        self._renew = False
        self._producer.purge()
        self._producer.flush(0)
        self._producer = self._new_producer()
        self._calls.run(self._stop, "init_transactions",
                        lambda: self._producer.init_transactions(self._config.call_timeout_s))
        log.info("aggregates transactional producer renewed")

    # -- state ---------------------------------------------------------------------------------

    def _reset(self, reason: str) -> None:
        """Back to the last checkpoint: state from the changelogs, events from the committed
        offsets. A new boot id makes the next updates skip sequence numbers, since updates sent
        after the checkpoint may carry the numbers the reloaded state will hand out again."""
        log.warning("aggregates checkpoint given up; reloading state and folding the events again",
                    extra={"reason": reason})
        self._metrics.resets.inc()
        self._renew = self._config.transactional
        self._alerts, self._held = [], 0
        self._widgets.boot_id = uuid.uuid4().hex
        owned = set(self._owned)
        self._forget(owned)
        # A pause first: a failure that repeats (broker away) must not spin.
        if not self._stop.wait(RETRY_PAUSE_S):
            self._recover_until_done(owned, "reset", seek=True)

    def _recover_until_done(self, partitions: set[int], what: str, *, seek: bool) -> bool:
        """``_recover``, retried while it fails retriably; False when the loop stops first (the
        next owner recovers from the changelogs)."""
        while True:
            try:
                self._recover(partitions, seek=seek)
                return True
            except StoppedError:
                return False
            except KafkaException as exc:
                fatal = fatal_only(exc, what)
                if fatal is not None:
                    raise fatal from exc
                log.warning("state recovery failed; retrying",
                            extra={"during": what, "error": str(exc)})
                self._forget(partitions)
                if self._stop.wait(RETRY_PAUSE_S):
                    return False

    def _recover(self, partitions: set[int], *, seek: bool) -> None:
        """Load the state of ``partitions``; with ``seek``, move the consumer back to their
        committed offsets (an assignment starts there anyway)."""
        started = time.perf_counter()
        events = self._config.events_topic
        committed = self._consumer.committed(
            [TopicPartition(events, p) for p in sorted(partitions)], self._config.call_timeout_s)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            else:
                self._committed[tp.partition] = tp.offset
        stores = {s.changelog_topic: s for s in (self._widget_store, self._pattern_store)}
        records = read_to_end(self._recovery, [(t, p) for t in stores for p in partitions],
                              self._stop)
        by_topic: dict[str, list[tuple[bytes | None, bytes | None]]] = {t: [] for t in stores}
        for topic, key, value in records:
            by_topic[topic].append((key, value))
        widget_states = self._widget_store.load(by_topic[self._widget_store.changelog_topic])
        pattern_states = self._pattern_store.load(by_topic[self._pattern_store.changelog_topic])
        resumed = self._widgets.resume(widget_states)
        self._patterns.resume(pattern_states)
        self._metrics.recovered.inc(len(widget_states) + len(pattern_states))
        self._metrics.recovery_seconds.observe(time.perf_counter() - started)
        log.info("aggregates state recovered", extra={
            "partitions": sorted(partitions), "widget_states": len(widget_states),
            "pattern_states": len(pattern_states), "updates_resumed": resumed})
        if seek:
            for tp in committed:
                self._consumer.seek(tp)

    def _forget(self, partitions: set[int]) -> None:
        self._widgets.dropping(sid for sid, st in self._widget_store.items()
                               if st.get("part") in partitions)
        gone = self._widget_store.drop(partitions)
        self._pattern_store.drop(partitions)
        self._widgets.coalescer.forget(gone)
        # Whatever was touched and not yet persisted is lost with the state: the next owner (or
        # this loop, reloading) folds those events again.
        self._widgets.persist(set())
        self._patterns.persist(set())
        for p in partitions:
            self._next.pop(p, None)
            self._committed.pop(p, None)

    # -- group membership (callbacks run inside consume(), on this thread) ---------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        mine = {tp.partition for tp in partitions if tp.topic == self._config.events_topic}
        if not self._recover_until_done(mine, "assignment", seek=False):
            return
        self._owned = mine
        self._metrics.assigned.set(len(mine))
        log.info("aggregates partitions assigned", extra={"partitions": sorted(mine)})

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Eager assignment: everything goes. What was folded is committed first, so the next
        # owner resumes from it instead of folding it again.
        if self._owned:
            self._checkpoint(reset=False)
        self._give_up(partitions, "revoked")

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Another member may own these already: committing now could overwrite its work.
        self._give_up(partitions, "lost")

    def _give_up(self, partitions: list[TopicPartition], how: str) -> None:
        gone = {tp.partition for tp in partitions if tp.topic == self._config.events_topic}
        self._forget(gone | self._owned)
        # Updates may have gone out after the last checkpoint: if these partitions come back,
        # their numbers must not be handed out again (see _reset).
        self._widgets.boot_id = uuid.uuid4().hex
        self._owned = set()
        self._alerts, self._held = [], 0
        self._renew = self._config.transactional
        self._metrics.assigned.set(0)
        log.info(f"aggregates partitions {how}", extra={"partitions": sorted(gone)})

    def _close(self) -> None:
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("aggregates consumer close failed", extra={"error": str(exc)})
        try:
            self._recovery.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("changelog reader close failed", extra={"error": str(exc)})
        self._updates.flush(self._config.call_timeout_s)
        if not self._config.transactional:
            self._producer.flush(self._config.call_timeout_s)


def _produce(producer: Producer, topic: str, key: bytes, value: bytes | None, *,
             partition: int = -1, on_delivery: Any = None) -> None:
    """``partition`` -1: the producer's partitioner chooses (by key)."""
    kwargs: dict[str, Any] = {} if partition < 0 else {"partition": partition}
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)  # the local queue is full: let librdkafka send some
        except KafkaException as exc:
            failure = classify(exc, "produce")
            if not isinstance(failure, RetryError):
                raise failure from exc
            producer.poll(RETRY_PAUSE_S)
