"""EventPublisher: hand TelemetryEvents to the ingest topic without losing any when Kafka is away.

``publish`` Avro-encodes the event dicts (``pipeline.serde``) and appends them to this
producer's durable spool; a forwarder thread produces them, keyed by session_id, with an
idempotent acks=all producer and deletes them from the spool once Kafka has them. So a return
from ``publish`` means "durable": a killed process resends on its next start (duplicates carry
the same event_id; sinks are idempotent on it), and while Kafka is down events pile up on disk,
bounded by ``spool.max_bytes`` (then ``SpoolFullError``, a ``BackpressureError``).

One publisher per process and spool folder (a lock file enforces it). It satisfies the
``EventPublisher`` protocol of ``pipeline.sdk`` (``publish`` and ``flush``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.errors import EncodeError
from producers.forwarder import Forwarder, ProducerLike, kafka_producer_factory, producer_config
from producers.spool import Spool

if TYPE_CHECKING:
    from pipeline.serde import AvroSerde
    from pipeline.settings import Settings

log = logging.getLogger(__name__)

_SEP = "\x1f"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 300.0)


def event_tag(event: Mapping[str, Any]) -> bytes:
    return f"{event.get('source', 'unknown')}{_SEP}{event.get('event_type', '')}".encode()


def split_tag(tag: bytes) -> tuple[str, str]:
    source, _, event_type = tag.decode(errors="replace").partition(_SEP)
    return source, event_type


class PublisherMetrics:
    """Prometheus series of one publisher, in the owning component's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("source", "type")
        self.spooled = Counter("agentwatch_producer_events_spooled", "Events appended to the spool",
                               labels, registry=registry)
        self.produced = Counter("agentwatch_producer_events_produced",
                                "Events acknowledged by Kafka", labels, registry=registry)
        self.rejected = Counter("agentwatch_producer_events_rejected",
                                "Events refused before the spool (encode error, spool full)",
                                ("source", "type", "reason"), registry=registry)
        self.delivery_errors = Counter("agentwatch_producer_delivery_errors",
                                       "Kafka delivery errors (retried unless permanent)",
                                       ("reason",), registry=registry)
        self.latency = Histogram("agentwatch_producer_produce_latency_seconds",
                                 "From handing a record to the Kafka client to its acknowledgement",
                                 registry=registry, buckets=LATENCY_BUCKETS)
        self.backlog = Gauge("agentwatch_producer_spool_backlog_events",
                             "Events in the spool not yet acknowledged by Kafka", registry=registry)
        self.backlog_bytes = Gauge("agentwatch_producer_spool_backlog_bytes",
                                   "Undelivered bytes in the spool", registry=registry)
        self.in_flight = Gauge("agentwatch_producer_in_flight",
                               "Records handed to the Kafka client and not yet acknowledged",
                               registry=registry)

    # ForwarderHooks
    def delivered(self, counts: Mapping[bytes, int], latencies_s: Sequence[float]) -> None:
        for tag, count in counts.items():
            self.produced.labels(*split_tag(tag)).inc(count)
        for latency in latencies_s:
            self.latency.observe(latency)

    def delivery_error(self, reason: str) -> None:
        self.delivery_errors.labels(reason).inc()


class EventPublisher:
    """Durable, ordered, keyed publishing of event dicts to one topic (default: the ingest topic)."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        registry: CollectorRegistry | None = None,
        serde: AvroSerde | None = None,
        topic: str | None = None,
        spool_dir: Path | None = None,
        producer_factory: Callable[[Callable[[Any], None]], ProducerLike] | None = None,
    ) -> None:
        from pipeline.serde import serde_from_settings

        self.name = name
        self.topic = topic or settings.topics.ingest
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = PublisherMetrics(self.registry)
        self._serde = serde or serde_from_settings(settings)
        spool_settings = settings.spool
        self.spool = Spool(
            spool_dir or spool_settings.resolved_dir(settings.stack.dir, name),
            max_bytes=spool_settings.max_bytes,
            segment_bytes=spool_settings.segment_bytes,
            fsync=spool_settings.fsync,
        )
        factory = producer_factory or kafka_producer_factory(
            producer_config(settings.kafka, settings.producer, spool_settings.max_in_flight))
        self.forwarder = Forwarder(self.spool, self.topic, factory,
                                   max_in_flight=spool_settings.max_in_flight,
                                   hooks=self.metrics, name=f"{name}-forwarder")
        self.fsync = spool_settings.fsync
        self._started = False
        self._closed = False
        self.metrics.backlog.set_function(self.spool.backlog)
        self.metrics.backlog_bytes.set_function(self.spool.backlog_bytes)
        self.metrics.in_flight.set_function(self.forwarder.in_flight)
        if self.spool.backlog():
            log.info("spool holds undelivered events from a previous run; resending them",
                     extra={"events": self.spool.backlog(), "spool": str(self.spool.directory)})

    def start(self) -> EventPublisher:
        if not self._started:
            self.forwarder.start()
            self._started = True
        return self

    def __enter__(self) -> EventPublisher:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- publishing ------------------------------------------------------------------------

    def encode(self, events: Iterable[Mapping[str, Any]]) -> list[tuple[bytes, bytes, bytes]]:
        """(key, tag, value) spool records; ``EncodeError`` names the first event that fails."""
        out = []
        for event in events:
            try:
                value = self._serde.encode_event(event)
            except EncodeError:
                self.metrics.rejected.labels(*split_tag(event_tag(event)), "encode_error").inc()
                raise
            out.append((str(event["session_id"]).encode(), event_tag(event), value))
        return out

    def publish_many(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Spool every event or none of them (``EncodeError``, ``SpoolFullError``); returns the count.

        Does not fsync even when ``spool.fsync`` is set: call ``sync()`` (from a thread in async
        code) before telling a caller the events are safe from power loss.
        """
        records = self.encode(events)
        return self.append_records(records)

    def append_records(self, records: list[tuple[bytes, bytes, bytes]]) -> int:
        from producers.spool import SpoolFullError

        if not records:
            return 0
        try:
            self.spool.append(records)
        except SpoolFullError:
            self._count(self.metrics.rejected, records, "spool_full")
            raise
        self._count(self.metrics.spooled, records)
        self.forwarder.wake()
        return len(records)

    @staticmethod
    def _count(counter: Counter, records: list[tuple[bytes, bytes, bytes]], *extra: str) -> None:
        tags: dict[bytes, int] = {}
        for _key, tag, _value in records:
            tags[tag] = tags.get(tag, 0) + 1
        for tag, count in tags.items():
            counter.labels(*split_tag(tag), *extra).inc(count)

    def publish(self, event: Mapping[str, Any]) -> None:
        self.publish_many((event,))
        if self.fsync:
            self.sync()

    def sync(self) -> None:
        """fsync the spool when ``spool.fsync`` is on (group commit across threads); else a no-op."""
        if self.fsync:
            self.spool.sync()

    # -- delivery --------------------------------------------------------------------------

    def backlog(self) -> int:
        return self.spool.backlog()

    def flush(self, timeout: float = 10.0) -> int:
        """Wait until Kafka has everything published so far; returns how many are still waiting."""
        if not self._started:
            self.start()
        self.forwarder.wait_delivered(timeout)
        return self.spool.backlog()

    def healthy(self) -> bool:
        return not self._started or self.forwarder.alive()

    def close(self, timeout: float = 10.0) -> None:
        """Stop forwarding (waiting up to ``timeout`` for Kafka); what is left stays spooled."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self.forwarder.stop(timeout)
        left = self.spool.backlog()
        self.spool.close()
        if left:
            log.info("publisher closed with undelivered events kept in the spool",
                     extra={"events": left, "spool": str(self.spool.directory)})
