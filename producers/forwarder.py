"""The forwarder: one thread that moves a spool's records to Kafka, in order, and commits them.

Reads records from the spool cursor on, hands at most ``max_in_flight`` of them to an idempotent
confluent-kafka producer (acks=all, so no duplicates or reordering from librdkafka's own
retries), and commits the spool cursor over the longest prefix Kafka has acknowledged. The
producer's delivery timeout is infinite: while Kafka is away records wait in librdkafka (at most
``max_in_flight``) and on disk (the rest), and flow again when it returns.

A retriable delivery error (rare with an infinite timeout) or a fatal producer error rewinds to
the cursor and sends again: at-least-once, and every copy carries the same event_id, on which
the sinks are idempotent. A record Kafka can never take (too large for the broker) is written to
``<spool>/rejected/`` and skipped, so it cannot block the records behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.settings import KafkaSettings, ProducerSettings
from producers.spool import Position, Record, Spool, encode_record

log = logging.getLogger(__name__)

_READ_BATCH = 2000
_IDLE_WAIT_S = 0.05
_ERROR_LOG_INTERVAL_S = 30.0


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer the forwarder uses (tests pass doubles)."""

    def produce(self, topic: str, value: bytes, key: bytes, *, on_delivery: Any) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class ForwarderHooks(Protocol):
    """What the forwarder reports; the publisher turns these into Prometheus metrics."""

    def delivered(self, counts: Mapping[bytes, int], latencies_s: Sequence[float]) -> None:
        """Acknowledged records since the last call, by tag (reported once per loop round)."""
        ...

    def delivery_error(self, reason: str) -> None: ...


def producer_config(kafka: KafkaSettings, producer: ProducerSettings, max_in_flight: int) -> dict[str, Any]:
    """librdkafka settings of every spooling producer."""
    return {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": producer.compression,
        "linger.ms": producer.linger_ms,
        "batch.size": producer.batch_bytes,
        "partitioner": producer.partitioner,
        # Infinite: the spool, not a timer, decides how long an event may wait for Kafka.
        "message.timeout.ms": 0,
        "queue.buffering.max.messages": max_in_flight + 1000,
        "queue.buffering.max.kbytes": 1024 * 1024,
        # A local broker that comes back should be found within a second, not ten.
        "reconnect.backoff.max.ms": 1000,
    }


@dataclass(slots=True)
class _Flight:
    next_position: Position
    tag: bytes
    sent_at: float
    done: bool = False
    failed: bool = False


@dataclass
class _State:
    inflight: deque[_Flight] = field(default_factory=deque)
    rewind: bool = False
    recreate: bool = False
    # Acknowledgements are counted here by the delivery callbacks and reported in one go.
    acked: dict[bytes, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


class Forwarder:
    """Runs in its own thread; ``start``, then ``stop`` (flushes what Kafka will take in time)."""

    def __init__(
        self,
        spool: Spool,
        topic: str,
        producer_factory: Callable[[Callable[[Any], None]], ProducerLike],
        *,
        max_in_flight: int,
        hooks: ForwarderHooks,
        name: str = "forwarder",
    ) -> None:
        self.spool = spool
        self.topic = topic
        self._factory = producer_factory
        self._max_in_flight = max_in_flight
        self._hooks = hooks
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._state = _State()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stop_timeout = 10.0
        self._client_errors: dict[str, tuple[float, int]] = {}

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Tell the thread there is something new to read (saves up to one idle wait)."""
        self._wake.set()

    def in_flight(self) -> int:
        return len(self._state.inflight)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_delivered(self, timeout: float) -> bool:
        """True once everything appended so far is delivered (backlog 0) within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.spool.backlog() > 0:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return self.spool.backlog() == 0
                self._wake.set()
                self._idle.wait(min(left, 0.1))
        return True

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_timeout = timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout + 5.0)

    # -- the loop --------------------------------------------------------------------------

    def _error_cb(self, err: Any) -> None:
        fatal = getattr(err, "fatal", lambda: False)()
        if fatal:
            self._state.recreate = True
        self._warn("kafka client error", err, force=fatal)

    def _warn(self, message: str, err: Any, *, force: bool = False) -> None:
        # While Kafka is away the client reports every reconnect: say it once per interval.
        reason = _reason(err)
        now = time.monotonic()
        last, count = self._client_errors.get(reason, (0.0, 0))
        if force or now - last >= _ERROR_LOG_INTERVAL_S:
            log.warning("%s: %s", message, err,
                        extra={"reason": reason, "repeated_since_last_report": count})
            self._client_errors[reason] = (now, 0)
        else:
            self._client_errors[reason] = (last, count + 1)

    def _run(self) -> None:
        producer = self._factory(self._error_cb)
        read_pos = self.spool.cursor
        state = self._state
        while not self._stop.is_set():
            if state.recreate:
                # A fatal idempotence error: the old producer's in-flight records are lost to it;
                # they are still in the spool from the cursor on, so resend from there.
                log.error("kafka producer hit a fatal error; recreating it and resending")
                self._hooks.delivery_error("fatal")
                state.inflight.clear()
                state.recreate = state.rewind = False
                producer = self._factory(self._error_cb)
                read_pos = self.spool.cursor
            read_pos, sent = self._send(producer, read_pos)
            producer.poll(0 if sent else _IDLE_WAIT_S)
            self._commit_prefix()
            if state.rewind and all(f.done or f.failed for f in state.inflight):
                state.inflight.clear()
                state.rewind = False
                read_pos = self.spool.cursor
                time.sleep(0.5)
            if not sent and not state.inflight:
                with self._idle:
                    self._idle.notify_all()
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()
        self._shutdown(producer)

    def _send(self, producer: ProducerLike, read_pos: Position) -> tuple[Position, int]:
        state = self._state
        room = self._max_in_flight - len(state.inflight)
        if room <= 0 or state.rewind:
            return read_pos, 0
        records = self.spool.read(read_pos, min(room, _READ_BATCH))
        sent = 0
        for record in records:
            flight = _Flight(record.next_position, record.tag, time.monotonic())
            try:
                producer.produce(self.topic, record.value, record.key,
                                 on_delivery=self._callback(flight, record))
            except BufferError:
                producer.poll(_IDLE_WAIT_S)
                break
            state.inflight.append(flight)
            read_pos = record.next_position
            sent += 1
        return read_pos, sent

    def _callback(self, flight: _Flight, record: Record) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is None:
                flight.done = True
                acked = self._state.acked
                acked[flight.tag] = acked.get(flight.tag, 0) + 1
                self._state.latencies.append(time.monotonic() - flight.sent_at)
                return
            reason = _reason(err)
            if _permanent(err):
                log.error("kafka refused a record for good; kept under rejected/",
                          extra={"reason": reason, "bytes": len(record.value)})
                self._keep_rejected(record)
                self._hooks.delivery_error(reason)
                flight.done = True
                return
            self._hooks.delivery_error(reason)
            self._warn("delivery failed; resending from the spool", err)
            flight.failed = True
            self._state.rewind = True

        return on_delivery

    def _commit_prefix(self) -> None:
        state = self._state
        if state.acked:
            self._hooks.delivered(state.acked, state.latencies)
            state.acked, state.latencies = {}, []
        inflight = self._state.inflight
        count = 0
        last: Position | None = None
        while inflight and inflight[0].done:
            last = inflight.popleft().next_position
            count += 1
        if last is not None:
            self.spool.commit(last, count)

    def _keep_rejected(self, record: Record) -> None:
        folder = self.spool.directory / "rejected"
        folder.mkdir(exist_ok=True)
        with open(folder / time.strftime("%Y%m%d.rej"), "ab") as fh:
            fh.write(encode_record(record.key, record.tag, record.value))

    def _shutdown(self, producer: ProducerLike) -> None:
        deadline = time.monotonic() + self._stop_timeout
        while self._state.inflight and time.monotonic() < deadline:
            producer.flush(min(0.2, max(0.0, deadline - time.monotonic())))
            self._commit_prefix()
            if self._state.rewind:
                break
        self._commit_prefix()
        self.spool.save_cursor()
        with self._idle:
            self._idle.notify_all()


_PERMANENT = frozenset({"MSG_SIZE_TOO_LARGE", "INVALID_RECORD", "CORRUPT_MESSAGE",
                        "RECORD_LIST_TOO_LARGE", "INVALID_MSG_SIZE"})


def _reason(err: Any) -> str:
    name = getattr(err, "name", None)
    return str(name() if callable(name) else err).lower().lstrip("_")


def _permanent(err: Any) -> bool:
    name = getattr(err, "name", None)
    return (str(name()) if callable(name) else "").lstrip("_") in _PERMANENT


def kafka_producer_factory(config: Mapping[str, Any]) -> Callable[[Callable[[Any], None]], ProducerLike]:
    def make(error_cb: Callable[[Any], None]) -> ProducerLike:
        from confluent_kafka import Producer

        producer: ProducerLike = Producer({**config, "error_cb": error_cb})
        return producer

    return make
