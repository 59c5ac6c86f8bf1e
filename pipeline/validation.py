"""The contract's rules beyond Avro types, checked per event by the stream processor.

``validate_event`` is pure (the clock is a parameter) and cheap: no I/O, precompiled patterns,
rules kept as data per payload family. Every failure is an ``EventRuleError`` (a
``ValidationError``) naming the broken ``Rule`` and field, so the DLQ, logs and metrics can
tell them apart without reading messages.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pipeline import model
from pipeline.errors import ErrorKind, ValidationError

MIN_TIMESTAMP_US = 1_577_836_800_000_000
"""2020-01-01T00:00:00Z: anything older is a unit mistake (ms or s instead of us), not history."""
DEFAULT_MAX_FUTURE_US = 3600 * 1_000_000
"""Producer clocks may run ahead; an hour is skew, more is a bug (often ns instead of us)."""

_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*\Z")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_TRACE_ID = re.compile(r"[0-9a-f]{32}\Z")
_SPAN_ID = re.compile(r"[0-9a-f]{16}\Z")

_SEVERITIES = frozenset(s.value for s in model.Severity)
_SOURCES = frozenset(s.value for s in model.Source)
_PAYLOAD_NAMES = frozenset(model.PAYLOAD_RECORD_NAMES)
_REQUIRED_ENVELOPE: tuple[tuple[str, type], ...] = (
    ("event_id", str),
    ("event_type", str),
    ("session_id", str),
    ("agent", str),
    ("source", str),
)


class Rule(StrEnum):
    """Which rule an event broke; finer than ``ErrorKind``, carried on ``EventRuleError.rule``."""

    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_EVENT_ID = "bad_event_id"
    BAD_EVENT_TYPE = "bad_event_type"
    EMPTY_FIELD = "empty_field"
    UNKNOWN_SEVERITY = "unknown_severity"
    UNKNOWN_SOURCE = "unknown_source"
    UNKNOWN_PAYLOAD = "unknown_payload"
    PAYLOAD_MISMATCH = "payload_mismatch"
    NEGATIVE_VALUE = "negative_value"
    OUT_OF_RANGE = "out_of_range"
    BAD_SHA256 = "bad_sha256"
    BAD_TRACE_CONTEXT = "bad_trace_context"
    BAD_JSON = "bad_json"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"


# Shape problems are schema violations; the rest break a rule of the contract.
_SCHEMA_RULES = frozenset({
    Rule.MISSING_FIELD, Rule.WRONG_TYPE, Rule.UNKNOWN_SEVERITY, Rule.UNKNOWN_SOURCE,
    Rule.UNKNOWN_PAYLOAD,
})


class EventRuleError(ValidationError):
    """An event broke ``rule`` at ``field`` (a dotted path such as ``payload.lines_added``)."""

    def __init__(self, rule: Rule, field: str, message: str) -> None:
        kind = ErrorKind.SCHEMA_VIOLATION if rule in _SCHEMA_RULES else ErrorKind.RULE_VIOLATION
        super().__init__(f"{rule.value} at {field}: {message}", kind=kind)
        self.rule = rule
        self.field = field


_NON_NEGATIVE: Mapping[str, tuple[str, ...]] = {
    model.AGENT_TASK_EVENT: ("files_count", "duration_ms", "error_line", "error_column"),
    model.FILE_EVENT: (
        "size_bytes", "lines_added", "lines_removed", "files_matched", "duration_us",
    ),
    model.COMMAND_EVENT: (
        "env_vars_count", "duration_ms", "cpu_user_ms", "cpu_system_ms", "peak_memory_mib",
        "stdout_lines", "stderr_lines",
    ),
    model.TEST_EVENT: ("duration_ms",),
    model.BUILD_EVENT: ("duration_ms",),
    model.NETWORK_REQUEST: ("bytes_sent", "bytes_received", "duration_ms"),
    model.RESOURCE_SAMPLE: ("memory_mib", "cpu_pct", "memory_limit_mib", "cpu_limit_pct"),
    model.LLM_REQUEST: (
        "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
        "cost_usd", "duration_ms",
    ),
    model.SESSION_EVENT: ("duration_ms", "idle_ms"),
    model.USER_PROMPT: ("prompt_length",),
}
_PERCENT: Mapping[str, tuple[str, ...]] = {
    model.AGENT_TASK_EVENT: ("progress_pct",),
    model.TEST_EVENT: ("coverage_pct",),
}
_SHA256_FIELDS: Mapping[str, tuple[str, ...]] = {
    model.FILE_EVENT: ("checksum_sha256",),
}
_NON_EMPTY: Mapping[str, tuple[str, ...]] = {
    model.AGENT_STATE_TRANSITION: ("from_state", "to_state"),
    model.FILE_EVENT: ("path",),
    model.COMMAND_EVENT: ("binary",),
    model.TEST_EVENT: ("test_name",),
    model.NETWORK_REQUEST: ("domain",),
    model.LLM_REQUEST: ("model",),
    model.OTHER_EVENT: ("name",),
}


def validate_event(
    event: Mapping[str, Any],
    *,
    now_us: int | None = None,
    max_future_us: int = DEFAULT_MAX_FUTURE_US,
) -> dict[str, Any]:
    """The normalized event, or ``EventRuleError`` for the first rule it breaks.

    Normalizing only fills ``severity`` (inferred from the event type) when it is absent; the
    input is never mutated: a shallow copy is returned when something changes.
    """
    for name, typ in _REQUIRED_ENVELOPE:
        value = event.get(name)
        if value is None:
            raise EventRuleError(Rule.MISSING_FIELD, name, "required")
        if not isinstance(value, typ):
            raise EventRuleError(Rule.WRONG_TYPE, name, f"expected {typ.__name__}")
        if not value:
            raise EventRuleError(Rule.EMPTY_FIELD, name, "must not be empty")
    if not _UUID.match(event["event_id"]):
        raise EventRuleError(Rule.BAD_EVENT_ID, "event_id", "not a UUID")
    event_type: str = event["event_type"]
    if not _EVENT_TYPE.match(event_type):
        raise EventRuleError(
            Rule.BAD_EVENT_TYPE, "event_type", "want lowercase dotted category.subcategory.action"
        )
    if event["source"] not in _SOURCES:
        raise EventRuleError(Rule.UNKNOWN_SOURCE, "source", repr(event["source"]))
    _check_timestamp(event.get("timestamp"), now_us, max_future_us)
    trace = event.get("trace_context")
    if trace is not None:
        _check_trace(trace)
    payload = event.get("payload")
    _check_payload(event_type, payload)

    severity = event.get("severity")
    if severity is None:
        out = dict(event)
        out["severity"] = model.infer_severity(event_type, payload)
        return out
    if severity not in _SEVERITIES:
        raise EventRuleError(Rule.UNKNOWN_SEVERITY, "severity", repr(severity))
    return event if isinstance(event, dict) else dict(event)


def _check_timestamp(ts: Any, now_us: int | None, max_future_us: int) -> None:
    if ts is None:
        raise EventRuleError(Rule.MISSING_FIELD, "timestamp", "required")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise EventRuleError(Rule.WRONG_TYPE, "timestamp", "expected int microseconds")
    if ts < MIN_TIMESTAMP_US:
        raise EventRuleError(
            Rule.TIMESTAMP_TOO_OLD, "timestamp", f"{ts} us is before 2020 (ms or s instead of us?)"
        )
    now = time.time_ns() // 1000 if now_us is None else now_us
    if ts > now + max_future_us:
        raise EventRuleError(
            Rule.TIMESTAMP_IN_FUTURE, "timestamp", f"{(ts - now) / 1e6:.0f} s ahead of the clock"
        )


def _check_trace(trace: Any) -> None:
    if not isinstance(trace, Mapping):
        raise EventRuleError(Rule.WRONG_TYPE, "trace_context", "expected a record")
    trace_id, span_id = trace.get("trace_id"), trace.get("span_id")
    if not isinstance(trace_id, str) or not _TRACE_ID.match(trace_id) or not trace_id.strip("0"):
        raise EventRuleError(
            Rule.BAD_TRACE_CONTEXT, "trace_context.trace_id", "want 32 lowercase hex, not all 0"
        )
    if not isinstance(span_id, str) or not _SPAN_ID.match(span_id) or not span_id.strip("0"):
        raise EventRuleError(
            Rule.BAD_TRACE_CONTEXT, "trace_context.span_id", "want 16 lowercase hex, not all 0"
        )


def _check_payload(event_type: str, payload: Any) -> None:
    if payload is None:
        raise EventRuleError(Rule.MISSING_FIELD, "payload", "required")
    if not (isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[1], Mapping)):
        raise EventRuleError(Rule.WRONG_TYPE, "payload", "expected (record name, dict)")
    family, body = payload
    if family not in _PAYLOAD_NAMES:
        raise EventRuleError(Rule.UNKNOWN_PAYLOAD, "payload", repr(family))
    expected = model.payload_name_for(event_type)
    if family != expected:
        raise EventRuleError(
            Rule.PAYLOAD_MISMATCH, "payload",
            f"{event_type} carries {model.short_name(expected)}, "
            f"not {model.short_name(family)}",
        )
    for name in _NON_EMPTY.get(family, ()):
        value = body.get(name)
        if value is None:
            raise EventRuleError(Rule.MISSING_FIELD, f"payload.{name}", "required")
        if not value:
            raise EventRuleError(Rule.EMPTY_FIELD, f"payload.{name}", "must not be empty")
    for name in _NON_NEGATIVE.get(family, ()):
        value = _number(body, name)
        if value is not None and value < 0:
            raise EventRuleError(Rule.NEGATIVE_VALUE, f"payload.{name}", f"{value} < 0")
    for name in _PERCENT.get(family, ()):
        value = _number(body, name)
        if value is not None and not 0 <= value <= 100:
            raise EventRuleError(Rule.OUT_OF_RANGE, f"payload.{name}", f"{value} not in 0..100")
    for name in _SHA256_FIELDS.get(family, ()):
        value = body.get(name)
        if value is not None and not (isinstance(value, str) and _SHA256.match(value)):
            raise EventRuleError(Rule.BAD_SHA256, f"payload.{name}", "want 64 lowercase hex")
    if family == model.OTHER_EVENT:
        _check_json(body.get("json", "{}"))


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventRuleError(Rule.WRONG_TYPE, f"payload.{name}", "expected a number")
    if not math.isfinite(value):
        raise EventRuleError(Rule.OUT_OF_RANGE, f"payload.{name}", f"{value} is not finite")
    return float(value)


def _check_json(text: Any) -> None:
    try:
        json.loads(text)
    except (TypeError, ValueError) as exc:
        raise EventRuleError(Rule.BAD_JSON, "payload.json", "not a JSON document") from exc
    except RecursionError as exc:
        # Deeper than the parser's stack: no reader downstream could load it either.
        raise EventRuleError(Rule.BAD_JSON, "payload.json", "JSON nested too deeply") from exc
