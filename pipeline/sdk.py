"""Custom events from agent code and scripts: ``emit_event``, ``emit_progress``, ``emit_error``.

Transport: an event is built with ``pipeline.model.new_event``, checked with
``pipeline.validation.validate_event``, Avro-encoded with ``pipeline.serde`` and produced
straight to the ingest topic (key = session_id), i.e. the very record the collector writes.
Producing directly (rather than POSTing to the collector) keeps the SDK free of any HTTP
contract the collector does not have (it speaks Claude Code hooks and OTLP, not envelopes) and
costs no new dependency: confluent-kafka is already a core one. The price: no on-disk spool, so
while Kafka is unreachable events wait in librdkafka's memory queue for ``message.timeout.ms``
and are then counted as failed; ``flush()`` says how many did not get through.

The module-level functions share one lazily built ``Emitter`` per process (settings from the
environment, flushed at exit); code that wants explicit lifetimes builds its own ``Emitter``.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from pipeline import model
from pipeline.errors import BackpressureError, ConfigError, ErrorKind, ValidationError
from pipeline.schemas import load_catalog
from pipeline.settings import ProducerSettings
from pipeline.validation import validate_event

if TYPE_CHECKING:
    from pipeline.serde import AvroSerde
    from pipeline.settings import KafkaSettings, Settings

__all__ = [
    "ENVELOPE_FIELDS",
    "SESSION_ENV",
    "Emitter",
    "EventPublisher",
    "KafkaEventPublisher",
    "build_event",
    "emit_error",
    "emit_event",
    "emit_progress",
    "flush",
]

SESSION_ENV = "AGENTWATCH_SESSION_ID"
"""Session id used when a call names none (e.g. exported by a hook for the agent's tools)."""

ENVELOPE_FIELDS = frozenset({
    "session_id", "agent", "severity", "task_id", "metadata", "prompt_id", "tool_use_id",
    "timestamp_us", "event_id", "trace_context", "source",
})
"""Keyword arguments that set envelope fields; every other keyword is a payload field."""

_STACKTRACE_MAX = 16_000
"""Stack traces keep their last frames: the raise site is what a reader needs."""


class EventPublisher(Protocol):
    """Where finished events go: the Kafka publisher here, the collector's, or a test double."""

    def publish(self, event: dict[str, Any]) -> None: ...

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for delivery; returns how many events are still undelivered."""
        ...


class KafkaEventPublisher:
    """Encode events and produce them to one topic, keyed by session_id, idempotently.

    ``publish`` never blocks longer than ``queue_full_timeout_s``: when librdkafka's local queue
    is full it serves delivery reports until there is room, then gives up with a
    ``BackpressureError`` instead of growing memory without bound.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        serde: AvroSerde,
        *,
        tuning: ProducerSettings | None = None,
        delivery_timeout_ms: int = 30_000,
        queue_full_timeout_s: float = 30.0,
        extra_config: Mapping[str, Any] | None = None,
        producer: Any = None,
    ) -> None:
        """``producer`` replaces the confluent-kafka Producer (tests)."""
        tuning = tuning or ProducerSettings()
        conf: dict[str, Any] = {
            **kafka.client_config(),
            # Idempotence gives acks=all and no duplicates from librdkafka's own retries.
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": tuning.compression,
            "linger.ms": tuning.linger_ms,
            "batch.size": tuning.batch_bytes,
            # The same partitioner as every other producer: a session's SDK events must land on
            # the partition its hook events do, or per-session order is lost.
            "partitioner": tuning.partitioner,
            "message.timeout.ms": delivery_timeout_ms,
        }
        conf.update(extra_config or {})
        if producer is None:
            from confluent_kafka import Producer

            producer = Producer(conf)
        self._producer = producer
        self._topic = topic
        self._serde = serde
        self._queue_full_timeout_s = queue_full_timeout_s
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None

    @property
    def topic(self) -> str:
        return self._topic

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        # Runs inside poll()/flush() on the caller's thread; the lock covers callers that
        # publish from several threads.
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                self.last_error = str(err)

    def publish(self, event: dict[str, Any]) -> None:
        value = self._serde.encode_event(event)
        key = str(event["session_id"]).encode()
        waited = 0.0
        while True:
            try:
                self._producer.produce(self._topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                if waited >= self._queue_full_timeout_s:
                    raise BackpressureError(
                        f"Kafka producer queue still full after {waited:.0f}s", retry_after=1.0
                    ) from None
                self._producer.poll(0.1)
                waited += 0.1
        self._producer.poll(0)

    def flush(self, timeout: float = 10.0) -> int:
        """Events not delivered so far: those still queued after ``timeout`` plus every failure."""
        remaining = int(self._producer.flush(timeout))
        with self._lock:
            return remaining + self.failed

    def close(self, timeout: float = 10.0) -> int:
        return self.flush(timeout)

    @classmethod
    def from_settings(
        cls, settings: Settings, topic: str | None = None, **kwargs: Any
    ) -> KafkaEventPublisher:
        from pipeline.serde import serde_from_settings

        return cls(settings.kafka, topic or settings.topics.ingest, serde_from_settings(settings),
                   tuning=settings.producer, **kwargs)


def _payload_fields(family: str) -> frozenset[str]:
    info = load_catalog().record(family)
    return frozenset(f["name"] for f in info.schema["fields"])


def build_event(
    event_type: str,
    fields: Mapping[str, Any],
    *,
    session_id: str | None = None,
    agent: str = "claude-code",
    source: str = model.Source.SDK.value,
) -> dict[str, Any]:
    """A validated event from ``emit_event``-style keywords.

    Envelope keywords (``ENVELOPE_FIELDS``) go to the envelope; the rest form the payload. For a
    type without its own family (OtherEvent) they are carried as one JSON document; for a known
    family an unknown field is an error rather than silently dropped.
    """
    envelope = {k: v for k, v in fields.items() if k in ENVELOPE_FIELDS}
    payload = {k: v for k, v in fields.items() if k not in ENVELOPE_FIELDS}
    sid = envelope.pop("session_id", None) or session_id or os.environ.get(SESSION_ENV)
    if not sid:
        raise ConfigError(f"no session_id: pass session_id=... or set {SESSION_ENV}")
    family = model.payload_name_for(event_type)
    if family == model.OTHER_EVENT:
        body: dict[str, Any] = {
            "name": event_type,
            "json": json.dumps(payload, sort_keys=True, default=str),
        }
    else:
        unknown = sorted(set(payload) - _payload_fields(family))
        if unknown:
            raise ValidationError(
                f"{event_type} ({model.short_name(family)}) has no field(s) {', '.join(unknown)}",
                kind=ErrorKind.SCHEMA_VIOLATION,
            )
        body = payload
    metadata = envelope.pop("metadata", None)
    event = model.new_event(
        event_type,
        str(sid),
        (family, body) if family == model.OTHER_EVENT else body,
        agent=str(envelope.pop("agent", agent)),
        source=str(envelope.pop("source", source)),
        metadata={str(k): str(v) for k, v in (metadata or {}).items()},
        **envelope,
    )
    return validate_event(event)


def _error_fields(error: BaseException | str) -> dict[str, Any]:
    if isinstance(error, str):
        return {"error_message": error}
    out: dict[str, Any] = {
        "error_type": type(error).__name__,
        "error_message": str(error) or type(error).__name__,
    }
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    if frames:
        out["error_file"] = frames[-1].filename
        out["error_line"] = frames[-1].lineno
        out["error_stacktrace"] = "".join(traceback.format_exception(error))[-_STACKTRACE_MAX:]
    return out


class Emitter:
    """Builds, validates and publishes custom events for one agent (and optionally one session)."""

    def __init__(
        self,
        publisher: EventPublisher,
        *,
        session_id: str | None = None,
        agent: str = "claude-code",
        source: str = model.Source.SDK.value,
    ) -> None:
        self._publisher = publisher
        self._session_id = session_id
        self._agent = agent
        self._source = source

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> Emitter:
        from pipeline.settings import load_settings

        return cls(KafkaEventPublisher.from_settings(settings or load_settings()), **kwargs)

    @property
    def publisher(self) -> EventPublisher:
        return self._publisher

    def emit_event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Publish one event; returns it (its ``event_id`` is the handle to find it later)."""
        event = build_event(
            event_type, fields, session_id=self._session_id, agent=self._agent, source=self._source
        )
        self._publisher.publish(event)
        return event

    def emit_progress(
        self,
        progress_pct: float | None = None,
        current_step: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``agent.task.progress``: how far a task is (0-100) and what it is doing."""
        return self.emit_event(
            "agent.task.progress", progress_pct=progress_pct, current_step=current_step, **fields
        )

    def emit_error(self, error: BaseException | str, **fields: Any) -> dict[str, Any]:
        """``agent.task.failed`` from an exception (type, message, raise site, trace) or a text."""
        event_type = str(fields.pop("event_type", "agent.task.failed"))
        return self.emit_event(event_type, **{**_error_fields(error), **fields})

    def flush(self, timeout: float = 10.0) -> int:
        return self._publisher.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        return self.flush(timeout)

    def __enter__(self) -> Emitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@functools.cache
def _default_emitter() -> Emitter:
    # The one process-wide object of the SDK: a producer is expensive (threads, connections),
    # so the convenience functions share it; it is flushed when the interpreter exits.
    emitter = Emitter.from_settings()
    atexit.register(emitter.close)
    return emitter


def emit_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """Publish a custom event through the process's default emitter (see module docstring)."""
    return _default_emitter().emit_event(event_type, **fields)


def emit_progress(
    progress_pct: float | None = None, current_step: str | None = None, **fields: Any
) -> dict[str, Any]:
    return _default_emitter().emit_progress(progress_pct, current_step, **fields)


def emit_error(error: BaseException | str, **fields: Any) -> dict[str, Any]:
    return _default_emitter().emit_error(error, **fields)


def flush(timeout: float = 10.0) -> int:
    """Wait for the default emitter's events; returns how many are still undelivered."""
    return _default_emitter().flush(timeout)
