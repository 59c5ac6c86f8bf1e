"""Dead letters written by consumers: building a redacted ``DeadLetter`` and producing it durably.

A dead letter never carries an unredacted secret (avro/dead_letter.avsc). Records a sink rejects
decoded fine from the events topic, whose bytes the processor already redacted, so their bytes
are kept for replay. Bytes that did not even decode are unknown: only a redacted excerpt
(``pipeline.redaction.redact_raw``) and a SHA-256 travel, never the bytes themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pipeline.errors import ItemError, TransientError
from pipeline.model import DEAD_LETTER, now_us
from pipeline.serde import AvroSerde

log = logging.getLogger(__name__)

MAX_ORIGINAL_BYTES = 256 * 1024
"""Larger originals are truncated: a DLQ message must fit the topic's max.message.bytes."""
MAX_ERROR_MESSAGE = 2_000


def _redacted_excerpt(raw: bytes) -> tuple[str, str]:
    """(sha256 hex, redacted printable excerpt) of bytes nobody could decode."""
    from pipeline.redaction import redact_raw

    return redact_raw(raw, max_chars=4096)


def dead_letter_for(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    raw: bytes,
    error: ItemError,
    stage: str,
    raw_is_redacted: bool,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A complete ``DeadLetter`` record; ``raw_is_redacted`` says the bytes may be kept."""
    message = str(error)[:MAX_ERROR_MESSAGE]
    original_bytes: bytes | None
    original_text: str | None
    truncated = False
    if raw_is_redacted:
        original_bytes = raw[:MAX_ORIGINAL_BYTES]
        truncated = len(raw) > MAX_ORIGINAL_BYTES
        original_text = None
    else:
        digest, excerpt = _redacted_excerpt(raw)
        original_bytes = None
        original_text = excerpt
        truncated = True
        message = f"{message} (original omitted: {len(raw)} bytes, sha256 {digest})"[
            :MAX_ERROR_MESSAGE]
    session_id = None
    if key:
        try:
            session_id = key.decode("utf-8")
        except UnicodeDecodeError:
            session_id = None
    return {
        "original_bytes": original_bytes,
        "original_text": original_text,
        "original_truncated": truncated,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "error_kind": error.kind.value,
        "error_message": message,
        "first_seen": now_us(),
        "attempts": 1,
        "session_id": session_id,
        "event_id": event_id,
        "stage": stage,
    }


class KafkaDeadLetters:
    """``pipeline.sinks.DeadLetterSink`` on a Kafka topic (``agent.telemetry.dlq``).

    Letters stay pending until the broker acknowledged them; ``flush`` re-produces the ones whose
    delivery failed and raises ``TransientError`` if any is still unacknowledged at its deadline,
    so the caller does not commit offsets past a letter that is not durable.
    """

    def __init__(self, producer: Any, serde: AvroSerde, topic: str) -> None:
        self._producer = producer
        self._serde = serde
        self._topic = topic
        self._failed: list[tuple[bytes, bytes | None]] = []
        self._in_flight = 0

    def publish(self, letter: Mapping[str, object], key: bytes | None) -> None:
        self._produce(self._serde.encode(DEAD_LETTER, letter), key)

    def _produce(self, value: bytes, key: bytes | None) -> None:
        def on_delivery(err: Any, _msg: Any) -> None:
            self._in_flight -= 1
            if err is not None:
                self._failed.append((value, key))

        while True:
            try:
                self._producer.produce(self._topic, value=value, key=key, on_delivery=on_delivery)
                self._in_flight += 1
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            self._producer.flush(max(0.0, left))
            if self._failed and left > 0:
                retry, self._failed = self._failed, []
                log.warning("re-producing dead letters whose delivery failed",
                            extra={"count": len(retry)})
                for value, key in retry:
                    self._produce(value, key)
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                continue
            if self._failed or self._in_flight > 0:
                raise TransientError(
                    f"{len(self._failed) + self._in_flight} dead letters not acknowledged by Kafka"
                )
            return

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self.flush(timeout_s)
        except TransientError as exc:
            log.error("dead letters lost at close", extra={"error": str(exc)})
