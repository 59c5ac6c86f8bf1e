"""The one exception hierarchy of agentwatch.

Decisions (retry, dead-letter, crash) read the class flags, never the message text. Each
per-item error carries an ``ErrorKind`` that the DLQ, logs and metrics share.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Why an item could not be processed; the value is stored in dead letters and labels."""

    DECODE_ERROR = "decode_error"
    UNKNOWN_SCHEMA = "unknown_schema"
    TRUNCATED = "truncated"
    BAD_MAGIC = "bad_magic"
    SCHEMA_VIOLATION = "schema_violation"
    RULE_VIOLATION = "rule_violation"
    OVERSIZED = "oversized"
    MALFORMED_REQUEST = "malformed_request"
    SINK_REJECTED = "sink_rejected"
    INTERNAL = "internal"


class AgentwatchError(Exception):
    """Base of every error agentwatch raises on purpose."""

    retriable: bool = False
    kind: ErrorKind = ErrorKind.INTERNAL


class ConfigError(AgentwatchError):
    """A setting is missing or invalid; the message names the variable."""


class PrerequisiteError(AgentwatchError):
    """Something the local stack needs is not installed or not available (java, apt, a port)."""


class ItemError(AgentwatchError):
    """One item (message, request, row) is bad; it is dead-lettered and the stream goes on."""

    kind = ErrorKind.SCHEMA_VIOLATION

    def __init__(self, message: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class DecodeError(ItemError):
    """Bytes that are not a message we can read."""

    kind = ErrorKind.DECODE_ERROR


class UnknownSchemaError(DecodeError):
    kind = ErrorKind.UNKNOWN_SCHEMA


class TruncatedMessageError(DecodeError):
    kind = ErrorKind.TRUNCATED


class BadMagicError(DecodeError):
    kind = ErrorKind.BAD_MAGIC


class EncodeError(ItemError):
    """A record that does not fit its Avro schema (missing field, wrong type, bad union branch)."""

    kind = ErrorKind.SCHEMA_VIOLATION


class ValidationError(ItemError):
    """A decoded event breaks one of the contract's rules."""

    kind = ErrorKind.RULE_VIOLATION


class OversizedError(ItemError):
    kind = ErrorKind.OVERSIZED


class QueryError(AgentwatchError):
    """An analyst's search, SQL or named-query parameter is invalid: the caller's to fix, never retried.

    The message is safe to show to the user (the gateway answers 400 with it).
    """


class DeliveryError(AgentwatchError):
    """A notification channel refused an alert for good (or ran out of retries): dead-letter it."""


class TransientError(AgentwatchError):
    """A dependency is down or slow; the operation may succeed if retried."""

    retriable = True


class BackpressureError(TransientError):
    """A sink cannot keep up: pause its partitions for ``retry_after`` seconds, drop nothing."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
