"""Pure mapping of decoded records to ClickHouse rows (tuples in the column order of the tables).

``EVENT_COLUMNS`` is the insert column list of ``telemetry_events`` (migration 0001): shared
envelope columns, one group of typed columns per payload family (left at their empty value for
other families), ``metadata`` and ``payload`` as JSON strings so nothing the columns leave out is
lost, and the Kafka coordinates the staged-offset deduplication reads. Timestamps are kept twice:
``ts_us`` (Int64 microseconds, exact) and ``timestamp`` (DateTime seconds, for partitions and
time filters); 18.16 has no DateTime64.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from pipeline import model
from pipeline.errors import ErrorKind, ItemError

Row = tuple[Any, ...]

EVENT_COLUMNS: tuple[str, ...] = (
    "timestamp", "ts_us", "event_id", "session_id", "event_type", "agent", "source", "severity",
    "task_id", "prompt_id", "tool_use_id", "trace_id", "span_id", "schema_version", "payload_type",
    "file_path", "file_size_bytes", "lines_added", "lines_removed",
    "command_binary", "command_args", "exit_code", "duration_ms", "cpu_time_ms", "peak_memory_mib",
    "test_suite", "test_name", "test_outcome", "coverage_pct",
    "build_component", "build_type", "build_outcome",
    "network_protocol", "network_domain", "network_endpoint", "status_code", "bytes_sent",
    "bytes_received",
    "model", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
    "cost_usd", "request_id",
    "memory_mib", "cpu_pct",
    "error_type", "error_message",
    "metadata", "payload", "redacted_fields",
    "kafka_topic", "kafka_partition", "kafka_offset",
)

_EMPTY: dict[str, Any] = {
    "file_path": "", "file_size_bytes": None, "lines_added": None, "lines_removed": None,
    "command_binary": "", "command_args": [], "exit_code": None, "duration_ms": None,
    "cpu_time_ms": None, "peak_memory_mib": None,
    "test_suite": "", "test_name": "", "test_outcome": "", "coverage_pct": None,
    "build_component": "", "build_type": "", "build_outcome": "",
    "network_protocol": "", "network_domain": "", "network_endpoint": "", "status_code": None,
    "bytes_sent": None, "bytes_received": None,
    "model": "", "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
    "cache_creation_tokens": 0, "cost_usd": None, "request_id": "",
    "memory_mib": None, "cpu_pct": None,
    "error_type": "", "error_message": "",
}
_INDEX = {name: i for i, name in enumerate(EVENT_COLUMNS)}
_TEMPLATE: tuple[Any, ...] = tuple(_EMPTY.get(c) for c in EVENT_COLUMNS)

# Bounds of the ClickHouse types: a value outside is the event's fault, not the table's.
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_MAX_DATETIME_S = 2**32 - 1


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _bounded(name: str, value: Any, bounds: tuple[int, int]) -> Any:
    if value is None:
        return None
    if not bounds[0] <= value <= bounds[1]:
        raise ItemError(f"{name}={value} does not fit its ClickHouse column",
                        kind=ErrorKind.SINK_REJECTED)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# One encoder for every row: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json(value: Any) -> str:
    return _ENCODER.encode(value) if value else "{}"


def _task(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_EXIT] = _bounded("exit_code", p.get("exit_code"), _INT32)
    row[_I_DURATION] = _bounded("duration_ms", p.get("duration_ms"), _INT64)
    row[_I_ERROR_TYPE] = _s(p.get("error_type"))
    row[_I_ERROR_MESSAGE] = _s(p.get("error_message"))


def _file(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_FILE_PATH] = _s(p.get("path"))
    row[_I_FILE_SIZE] = _bounded("size_bytes", p.get("size_bytes"), _INT64)
    row[_I_LINES_ADDED] = _bounded("lines_added", p.get("lines_added"), _INT32)
    row[_I_LINES_REMOVED] = _bounded("lines_removed", p.get("lines_removed"), _INT32)
    duration_us = p.get("duration_us")
    if duration_us is not None:
        row[_I_DURATION] = _bounded("duration_us", duration_us // 1000, _INT64)


def _command(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_BINARY] = _s(p.get("binary"))
    row[_I_ARGS] = [str(a) for a in p.get("args") or ()]
    row[_I_EXIT] = _bounded("exit_code", p.get("exit_code"), _INT32)
    row[_I_DURATION] = _bounded("duration_ms", p.get("duration_ms"), _INT64)
    user, system = p.get("cpu_user_ms"), p.get("cpu_system_ms")
    if user is not None or system is not None:
        row[_I_CPU] = _bounded("cpu_time_ms", (user or 0) + (system or 0), _INT64)
    row[_I_PEAK_MEM] = p.get("peak_memory_mib")


def _test(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_TEST_SUITE] = _s(p.get("suite"))
    row[_I_TEST_NAME] = _s(p.get("test_name"))
    row[_I_TEST_OUTCOME] = _s(p.get("outcome"))
    row[_I_DURATION] = _bounded("duration_ms", p.get("duration_ms"), _INT64)
    row[_I_COVERAGE] = p.get("coverage_pct")


def _build(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_BUILD_COMPONENT] = _s(p.get("component"))
    row[_I_BUILD_TYPE] = _s(p.get("build_type"))
    row[_I_BUILD_OUTCOME] = _s(p.get("outcome"))
    row[_I_DURATION] = _bounded("duration_ms", p.get("duration_ms"), _INT64)


def _network(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_NET_PROTOCOL] = _s(p.get("protocol"))
    row[_I_NET_DOMAIN] = _s(p.get("domain"))
    row[_I_NET_ENDPOINT] = _s(p.get("endpoint"))
    row[_I_STATUS] = _bounded("status_code", p.get("status_code"), _INT32)
    row[_I_BYTES_SENT] = _bounded("bytes_sent", p.get("bytes_sent"), _INT64)
    row[_I_BYTES_RECEIVED] = _bounded("bytes_received", p.get("bytes_received"), _INT64)
    row[_I_DURATION] = _bounded("duration_ms", p.get("duration_ms"), _INT64)


def _resource(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_MEMORY] = p.get("memory_mib")
    row[_I_CPU_PCT] = p.get("cpu_pct")


def _llm(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_MODEL] = _s(p.get("model"))
    row[_I_INPUT] = _bounded("input_tokens", p.get("input_tokens") or 0, _UINT64)
    row[_I_OUTPUT] = _bounded("output_tokens", p.get("output_tokens") or 0, _UINT64)
    row[_I_CACHE_READ] = _bounded("cache_read_tokens", p.get("cache_read_tokens") or 0, _UINT64)
    row[_I_CACHE_CREATE] = _bounded("cache_creation_tokens", p.get("cache_creation_tokens") or 0,
                                    _UINT64)
    row[_I_COST] = p.get("cost_usd")
    row[_I_DURATION] = _bounded("duration_ms", p.get("duration_ms"), _INT64)
    row[_I_REQUEST_ID] = _s(p.get("request_id"))


def _session(row: list[Any], p: Mapping[str, Any]) -> None:
    row[_I_MODEL] = _s(p.get("model"))
    row[_I_DURATION] = _bounded("duration_ms", p.get("duration_ms"), _INT64)


_I_FILE_PATH = _INDEX["file_path"]
_I_FILE_SIZE = _INDEX["file_size_bytes"]
_I_LINES_ADDED = _INDEX["lines_added"]
_I_LINES_REMOVED = _INDEX["lines_removed"]
_I_BINARY = _INDEX["command_binary"]
_I_ARGS = _INDEX["command_args"]
_I_EXIT = _INDEX["exit_code"]
_I_DURATION = _INDEX["duration_ms"]
_I_CPU = _INDEX["cpu_time_ms"]
_I_PEAK_MEM = _INDEX["peak_memory_mib"]
_I_TEST_SUITE = _INDEX["test_suite"]
_I_TEST_NAME = _INDEX["test_name"]
_I_TEST_OUTCOME = _INDEX["test_outcome"]
_I_COVERAGE = _INDEX["coverage_pct"]
_I_BUILD_COMPONENT = _INDEX["build_component"]
_I_BUILD_TYPE = _INDEX["build_type"]
_I_BUILD_OUTCOME = _INDEX["build_outcome"]
_I_NET_PROTOCOL = _INDEX["network_protocol"]
_I_NET_DOMAIN = _INDEX["network_domain"]
_I_NET_ENDPOINT = _INDEX["network_endpoint"]
_I_STATUS = _INDEX["status_code"]
_I_BYTES_SENT = _INDEX["bytes_sent"]
_I_BYTES_RECEIVED = _INDEX["bytes_received"]
_I_MODEL = _INDEX["model"]
_I_INPUT = _INDEX["input_tokens"]
_I_OUTPUT = _INDEX["output_tokens"]
_I_CACHE_READ = _INDEX["cache_read_tokens"]
_I_CACHE_CREATE = _INDEX["cache_creation_tokens"]
_I_COST = _INDEX["cost_usd"]
_I_REQUEST_ID = _INDEX["request_id"]
_I_MEMORY = _INDEX["memory_mib"]
_I_CPU_PCT = _INDEX["cpu_pct"]
_I_ERROR_TYPE = _INDEX["error_type"]
_I_ERROR_MESSAGE = _INDEX["error_message"]

_FAMILIES: Mapping[str, Callable[[list[Any], Mapping[str, Any]], None]] = {
    model.AGENT_TASK_EVENT: _task,
    model.FILE_EVENT: _file,
    model.COMMAND_EVENT: _command,
    model.TEST_EVENT: _test,
    model.BUILD_EVENT: _build,
    model.NETWORK_REQUEST: _network,
    model.RESOURCE_SAMPLE: _resource,
    model.LLM_REQUEST: _llm,
    model.SESSION_EVENT: _session,
}
"""Families without typed columns (state transitions, prompts, notifications, other) live in
``payload`` only."""
_SHORT: Mapping[str, str] = {name: model.short_name(name) for name in model.PAYLOAD_RECORD_NAMES}


def event_row(event: Mapping[str, Any], topic: str, partition: int, offset: int) -> Row:
    """The ``telemetry_events`` row of a decoded event; ``ItemError(SINK_REJECTED)`` when a
    value cannot be stored (so the event is dead-lettered instead of failing the batch)."""
    try:
        family, body = event["payload"]
        ts_us = int(event["timestamp"])
        seconds = ts_us // 1_000_000
        if not 0 <= seconds <= _MAX_DATETIME_S:
            raise ItemError(f"timestamp {ts_us} is outside ClickHouse DateTime",
                            kind=ErrorKind.SINK_REJECTED)
        trace = event.get("trace_context") or {}
        row = list(_TEMPLATE)
        fill = _FAMILIES.get(family)
        if fill is not None:
            fill(row, body)
        get = event.get
        row[0] = seconds
        row[1] = ts_us
        row[2] = event["event_id"]
        row[3] = event["session_id"]
        row[4] = event["event_type"]
        row[5] = event["agent"]
        row[6] = get("source") or "unknown"
        row[7] = get("severity") or "info"
        row[8] = get("task_id") or ""
        row[9] = get("prompt_id") or ""
        row[10] = get("tool_use_id") or ""
        row[11] = trace.get("trace_id") or ""
        row[12] = trace.get("span_id") or ""
        row[13] = get("schema_version") or 1
        row[14] = _SHORT.get(family) or model.short_name(family)
        row[-6] = _json(get("metadata"))
        row[-5] = _json(body)
        row[-4] = list(get("redacted_fields") or ())
        row[-3] = topic
        row[-2] = partition
        row[-1] = offset
    except ItemError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ItemError(f"event cannot be mapped to a row: {type(exc).__name__}: {exc}",
                        kind=ErrorKind.SINK_REJECTED) from exc
    return tuple(row)


PATTERN_ALERT_COLUMNS: tuple[str, ...] = (
    "detected_at", "detected_us", "alert_id", "pattern", "session_id", "agent", "severity",
    "window_start", "window_start_us", "window_end_us", "evidence_event_ids", "message",
    "suggested_mitigation", "kafka_topic", "kafka_partition", "kafka_offset",
)


def pattern_alert_row(alert: Mapping[str, Any], topic: str, partition: int, offset: int) -> Row:
    try:
        detected, start = int(alert["detected_at"]), int(alert["window_start"])
        for name, us in (("detected_at", detected), ("window_start", start)):
            if not 0 <= us // 1_000_000 <= _MAX_DATETIME_S:
                raise ItemError(f"{name} {us} is outside ClickHouse DateTime",
                                kind=ErrorKind.SINK_REJECTED)
        return (
            detected // 1_000_000, detected, alert["alert_id"], alert["pattern"],
            alert["session_id"], alert["agent"], alert.get("severity") or "info",
            start // 1_000_000, start, int(alert["window_end"]),
            [str(e) for e in alert.get("evidence_event_ids") or ()], _s(alert.get("message")),
            _s(alert.get("suggested_mitigation")), topic, partition, offset,
        )
    except ItemError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ItemError(f"pattern alert cannot be mapped to a row: {exc}",
                        kind=ErrorKind.SINK_REJECTED) from exc


DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "first_seen", "first_seen_us", "stage", "error_kind", "error_message", "source_topic",
    "source_partition", "source_offset", "attempts", "session_id", "event_id", "original_text",
    "original_bytes", "original_truncated", "kafka_topic", "kafka_partition", "kafka_offset",
)


def dead_letter_row(letter: Mapping[str, Any], topic: str, partition: int, offset: int) -> Row:
    try:
        first = int(letter["first_seen"])
        if not 0 <= first // 1_000_000 <= _MAX_DATETIME_S:
            raise ItemError(f"first_seen {first} is outside ClickHouse DateTime",
                            kind=ErrorKind.SINK_REJECTED)
        raw = letter.get("original_bytes")
        return (
            first // 1_000_000, first, _s(letter.get("stage")), letter["error_kind"],
            _s(letter.get("error_message")), letter["source_topic"],
            _bounded("source_partition", int(letter.get("source_partition", -1)), _INT32),
            _bounded("source_offset", int(letter.get("source_offset", -1)), _INT64),
            max(0, int(letter.get("attempts") or 1)), _s(letter.get("session_id")),
            _s(letter.get("event_id")), _s(letter.get("original_text")),
            bytes(raw) if raw is not None else b"", 1 if letter.get("original_truncated") else 0,
            topic, partition, offset,
        )
    except ItemError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ItemError(f"dead letter cannot be mapped to a row: {exc}",
                        kind=ErrorKind.SINK_REJECTED) from exc
