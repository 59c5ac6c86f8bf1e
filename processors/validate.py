"""The worker's per-message work, pure: ingest bytes in, clean event bytes or a dead letter out.

No Kafka, no Faust, no clock of its own: the first stage (ingest_loop.py) feeds raw message
values here one by one and produces whatever comes back. Order matters and is deliberate:

decode -> enrich -> precut -> redact -> truncate -> validate -> encode -> size check

Truncation is split around redaction (see truncation.py) so no cut can leave a prefix of a
secret that no rule matches, while a 10 MB field costs no more to redact than a 70 KB one;
validation runs on the event as it will travel (after enrichment has filled what it
can), so a dead letter for a broken rule already holds redacted data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import DecodeError, ErrorKind, ItemError, OversizedError, TransientError
from pipeline.model import now_us as wall_clock_us
from pipeline.serde import AvroSerde
from pipeline.validation import validate_event
from processors.deadletters import DeadLetterBuilder, RawRedactor, SourceMeta, TextRedactor
from processors.enrich import enrich
from processors.truncation import precut_event, truncate_event

log = logging.getLogger(__name__)

__all__ = ["CleanEvent", "DeadLetterOut", "EventProcessor", "Limits", "Outcome", "SourceMeta"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_field_bytes: int = 64 * 1024
    max_event_bytes: int = 1024 * 1024
    excerpt_chars: int = 4096
    max_future_us: int = 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class CleanEvent:
    """A valid, redacted, enriched event, encoded for ``agent.telemetry.events``."""

    key: bytes
    """The session id: every topic is keyed by session."""
    value: bytes
    event_id: str
    truncated: tuple[str, ...] = ()
    """JSON pointers of the fields cut to ``max_field_bytes``."""
    redacted: int = 0
    """How many fields this stage redacted."""

    def __reduce__(self) -> tuple[type[CleanEvent], tuple[Any, ...]]:
        # Pool processes send these back by the thousand (processors/pool.py): pickled as
        # constructor arguments they cost half of the slots-state default.
        return (CleanEvent, (self.key, self.value, self.event_id, self.truncated, self.redacted))


@dataclass(frozen=True, slots=True)
class DeadLetterOut:
    """A DeadLetter record, encoded for ``agent.telemetry.dlq``."""

    key: bytes | None
    value: bytes
    kind: ErrorKind
    record: dict[str, Any]


Outcome = CleanEvent | DeadLetterOut


class EventProcessor:
    """Compiled per-message processing for one configuration; holds no per-message state."""

    def __init__(
        self,
        serde: AvroSerde,
        redactor: TextRedactor,
        raw_redactor: RawRedactor,
        limits: Limits | None = None,
        clock: Callable[[], int] = wall_clock_us,
    ) -> None:
        self._serde = serde
        self._redactor = redactor
        self._limits = limits = limits or Limits()
        self._clock = clock
        self._dead = DeadLetterBuilder(redactor, raw_redactor, limits.excerpt_chars)

    def process(self, raw: bytes, meta: SourceMeta) -> Outcome:
        """Never raises for a bad message; raises only ``TransientError`` (retry the batch)."""
        try:
            return self._process(raw, meta)
        except TransientError:
            raise
        except Exception as exc:
            # A bug must not stall the partition on one message forever: park it, loudly.
            log.exception(
                "unexpected error processing a message; dead-lettered",
                extra={"topic": meta.topic, "partition": meta.partition, "offset": meta.offset},
            )
            return self._dead_bytes(raw, meta, ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _process(self, raw: bytes, meta: SourceMeta) -> Outcome:
        now = self._clock()
        try:
            event = self._serde.decode_event(raw)
        except DecodeError as exc:
            return self._dead_bytes(raw, meta, exc.kind, str(exc), now)
        redacted = False
        limits = self._limits
        try:
            event, precut = precut_event(enrich(event), limits.max_field_bytes)
            before = len(event.get("redacted_fields") or ())
            event = self._redactor.redact_event(event)
            redacted = True
            event, truncated = truncate_event(event, limits.max_field_bytes, precut)
            event = validate_event(event, now_us=now, max_future_us=limits.max_future_us)
            value = self._serde.encode_event(event)
            if len(value) > limits.max_event_bytes:
                raise OversizedError(
                    f"event is {len(value)} bytes after truncating fields to "
                    f"{limits.max_field_bytes}; the bound is {limits.max_event_bytes}"
                )
        except ItemError as exc:
            record = self._dead.for_event(event, meta, exc.kind, str(exc), now, redacted=redacted)
            return self._encode_dead(record, meta, exc.kind)
        return CleanEvent(
            key=event["session_id"].encode("utf-8"),
            value=value,
            event_id=event["event_id"],
            truncated=tuple(truncated),
            redacted=len(event.get("redacted_fields") or ()) - before,
        )

    def _dead_bytes(
        self, raw: bytes, meta: SourceMeta, kind: ErrorKind, message: str, now: int | None = None
    ) -> DeadLetterOut:
        record = self._dead.for_bytes(
            raw, meta, kind, message, self._clock() if now is None else now
        )
        return self._encode_dead(record, meta, kind)

    def _encode_dead(
        self, record: dict[str, Any], meta: SourceMeta, kind: ErrorKind
    ) -> DeadLetterOut:
        return DeadLetterOut(
            key=self._dead.key_for(record, meta),
            value=self._serde.encode("dev.agentwatch.DeadLetter", record),
            kind=kind,
            record=record,
        )


def build_processor(settings: Any) -> EventProcessor:
    """The processor ``settings`` describe (the worker's, a pool process's, a benchmark's)."""
    import functools

    from pipeline.redaction import Redactor, redact_raw
    from pipeline.serde import serde_from_settings

    conf = settings.worker
    redactor = Redactor(settings.redaction)
    return EventProcessor(
        serde_from_settings(settings),
        redactor,
        functools.partial(redact_raw, redactor=redactor, max_chars=conf.dead_letter_excerpt_chars),
        Limits(
            max_field_bytes=conf.max_field_bytes,
            max_event_bytes=conf.max_event_bytes,
            excerpt_chars=conf.dead_letter_excerpt_chars,
            max_future_us=int(conf.max_clock_skew_s * 1_000_000),
        ),
    )
