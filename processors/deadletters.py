"""DeadLetter records for what the worker rejects, with nothing secret left in them.

A dead letter is read by people and kept for a month (dlq retention), so it gets the same care
as an event: the decoded event is redacted field by field and its JSON rendering redacted once
more (that second pass also covers the envelope fields the event redaction leaves alone, such as
ids); bytes that never decoded keep only their hash and a redacted, printable excerpt. Error
messages are redacted too, because decoders and rules quote the values they choke on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.errors import ErrorKind

STAGE = "processor.validate"
"""``DeadLetter.stage`` of everything this worker dead-letters."""


class TextRedactor(Protocol):
    """What dead letters need of ``pipeline.redaction.Redactor``."""

    def redact_event(self, event: dict[str, Any]) -> dict[str, Any]: ...

    def redact_text(self, text: str) -> tuple[str, list[str]]: ...


RawRedactor = Callable[[bytes], tuple[str, str]]
"""``bytes -> (sha256 hex, redacted printable excerpt)``: ``pipeline.redaction.redact_raw`` with
the worker's redactor and excerpt bound."""

_RAW_CUT = re.compile(r"…\[\+\d+ chars\]\Z")
"""How ``redact_raw`` ends an excerpt it cut."""


@dataclass(frozen=True, slots=True)
class SourceMeta:
    """Where a message came from: what a dead letter must name so it can be found and replayed."""

    topic: str
    partition: int = -1
    offset: int = -1
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterBuilder:
    redactor: TextRedactor
    raw_redactor: RawRedactor
    excerpt_chars: int

    def for_bytes(
        self, raw: bytes, meta: SourceMeta, kind: ErrorKind, message: str, now_us: int
    ) -> dict[str, Any]:
        """Dead letter of a message that did not decode: hash, size and a redacted excerpt."""
        digest, excerpt = self.raw_redactor(raw)
        # Second pass: the excerpt is printable text now, so the text rules see it whole.
        excerpt, _ = self.redactor.redact_text(excerpt)
        return self._record(
            meta,
            kind,
            f"{self._clean(message)} [sha256={digest} size={len(raw)}]",
            now_us,
            text=excerpt or None,
            truncated=_RAW_CUT.search(excerpt) is not None,
        )

    def for_event(
        self,
        event: dict[str, Any],
        meta: SourceMeta,
        kind: ErrorKind,
        message: str,
        now_us: int,
        *,
        redacted: bool = False,
    ) -> dict[str, Any]:
        """Dead letter of a decoded event that broke a rule or does not fit."""
        clean = event if redacted else self.redactor.redact_event(event)
        rendered = json.dumps(clean, ensure_ascii=False, default=_json_default)
        rendered, _ = self.redactor.redact_text(rendered)
        bounded = rendered[: self.excerpt_chars]
        return self._record(
            meta,
            kind,
            self._clean(message),
            now_us,
            text=bounded or None,
            truncated=len(bounded) < len(rendered),
            session_id=self._id(event.get("session_id")),
            event_id=self._id(event.get("event_id")),
        )

    def key_for(self, record: dict[str, Any], meta: SourceMeta) -> bytes | None:
        """Kafka key of the dead letter: the session when known, else the original key if clean."""
        session = record.get("session_id")
        if isinstance(session, str) and session:
            return session.encode("utf-8")
        if meta.key is None:
            return None
        try:
            text = meta.key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        redacted, rules = self.redactor.redact_text(text)
        return None if rules or redacted != text else meta.key

    def _clean(self, message: str) -> str:
        return self.redactor.redact_text(message)[0][: max(self.excerpt_chars, 512)]

    def _id(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        return self.redactor.redact_text(value)[0][:256]

    @staticmethod
    def _record(
        meta: SourceMeta,
        kind: ErrorKind,
        message: str,
        now_us: int,
        *,
        text: str | None,
        truncated: bool,
        session_id: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "original_bytes": None,
            "original_text": text,
            "original_truncated": truncated,
            "source_topic": meta.topic,
            "source_partition": meta.partition,
            "source_offset": meta.offset,
            "error_kind": kind.value,
            "error_message": message,
            "first_seen": now_us,
            "attempts": 1,
            "session_id": session_id,
            "event_id": event_id,
            "stage": STAGE,
        }


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)
