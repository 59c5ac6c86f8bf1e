"""OTLP/HTTP requests (Claude Code's native telemetry) -> TelemetryEvents. Pure functions.

Bodies are decoded with the official protobuf classes of ``opentelemetry-proto``: binary
protobuf as is, OTLP/JSON through ``google.protobuf.json_format`` after turning the hex trace and
span ids the OTLP/JSON spec uses into the base64 protobuf's JSON mapping expects.

Logs carry Claude Code's events (``claude_code.api_request`` -> llm.request, ``api_error`` ->
agent.task.failed, ``tool_result`` -> command/file/network/task events via the same tool mapping
as the hooks, ``user_prompt`` -> user.prompt; anything else -> ``other``). Every metric data point
becomes an ``otel.metric`` event (OtherEvent named after the metric, value and attributes in its
JSON); every span a ``trace.span`` event with its trace context. Event ids are name-based UUIDs
(version 8, a keyed blake2b) of the record's own bytes (or trace and span id), so an exporter's
retry of the same batch maps to the same ids and is counted once downstream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from pipeline import model
from pipeline.errors import DecodeError
from producers.collector import commands, tools
from producers.collector.hooks import EVENT_ID_NAMESPACE
from producers.collector.tools import Draft, ToolOutcome, as_int, as_str, as_text

SIGNALS: Mapping[str, tuple[type[Message], type[Message]]] = {
    "logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
    "metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
}
UNKNOWN_SESSION = "unknown"
AGENT = "claude-code"
_PREFIX = "claude_code."
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_KEPT_METADATA = ("app.version", "terminal.type", "event.sequence", "query_source", "speed")


class OtlpDecodeError(DecodeError):
    """A body that is not an OTLP export request of the signal it was posted to."""


# -- decoding ---------------------------------------------------------------------------------

def is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OtlpDecodeError(f"{key} is not hex, as OTLP/JSON wants") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    return node


def decode_request(signal: str, body: bytes, content_type: str) -> Message:
    request_cls, _ = SIGNALS[signal]
    message = request_cls()
    try:
        if is_json(content_type):
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise OtlpDecodeError("OTLP/JSON body must be an object")
            json_format.ParseDict(_hex_ids_to_base64(doc), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except OtlpDecodeError:
        raise
    except (ProtobufDecodeError, json_format.ParseError, ValueError, TypeError,
            binascii.Error, RecursionError) as exc:
        raise OtlpDecodeError(f"not an OTLP {signal} export request: {type(exc).__name__}") from exc
    return message


def _base64_ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _base64_ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _base64_ids_to_hex(item)
    return node


def to_json(message: Message) -> bytes:
    """OTLP/JSON of a protobuf request as the spec writes it (hex ids, camelCase, enum numbers)."""
    doc = json_format.MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_base64_ids_to_hex(doc)).encode()


def encode_response(signal: str, as_json: bool) -> tuple[bytes, str]:
    """An empty Export*ServiceResponse (full success) in the request's encoding."""
    response = SIGNALS[signal][1]()
    if as_json:
        return json_format.MessageToJson(response).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"


# -- attribute values -------------------------------------------------------------------------

def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _non_negative_float(value: Any) -> float | None:
    number = _float(value)
    return number if number is not None and number >= 0 else None


def _count(value: Any) -> int:
    number = as_int(value)
    return number if number is not None and number >= 0 else 0


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _id(*parts: bytes) -> str:
    """A name-based UUID of the parts (RFC 9562 version 8 layout: one fast hash per event)."""
    digest = bytearray(hashlib.blake2b(b"\0".join(parts), digest_size=16,
                                       key=EVENT_ID_NAMESPACE.bytes).digest())
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _trace_context(trace_id: bytes, span_id: bytes, sampled: bool = True) -> model.TraceContext | None:
    if len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
        return None
    return {"trace_id": trace_id.hex(), "span_id": span_id.hex(), "sampled": sampled}


def _timestamp(primary: int, secondary: int, received_us: int) -> int:
    return (primary or secondary) // 1000 or received_us


def _session(attrs: Mapping[str, Any], resource: Mapping[str, Any]) -> str:
    return as_str(attrs.get("session.id")) or as_str(resource.get("session.id")) or UNKNOWN_SESSION


def _metadata(attrs: Mapping[str, Any], resource: Mapping[str, Any], **extra: str) -> dict[str, str]:
    meta = {k: str(v) for k, v in ((k, attrs.get(k, resource.get(k))) for k in _KEPT_METADATA)
            if v is not None}
    meta.update(extra)
    return meta


# -- logs (Claude Code's events) ----------------------------------------------------------------

def _api_request(a: Mapping[str, Any]) -> list[Draft]:
    return [Draft("llm.request", {
        "model": as_str(a.get("model")) or tools.UNKNOWN,
        "input_tokens": _count(a.get("input_tokens")),
        "output_tokens": _count(a.get("output_tokens")),
        "cache_read_tokens": _count(a.get("cache_read_tokens")),
        "cache_creation_tokens": _count(a.get("cache_creation_tokens")),
        "cost_usd": _non_negative_float(a.get("cost_usd")),
        "duration_ms": tools.non_negative(as_int(a.get("duration_ms"))),
        "request_id": as_str(a.get("request_id")),
    })]


def _api_error(a: Mapping[str, Any]) -> list[Draft]:
    status = str(a["status_code"]) if a.get("status_code") not in (None, "") else None
    meta = {k: str(a[k]) for k in ("model", "attempt", "status_code") if a.get(k) not in (None, "")}
    return [Draft("agent.task.failed", {
        "agent_name": AGENT, "task_type": "api_request",
        "error_type": f"http_{status}" if status and status.isdigit() else (status or "api_error"),
        "error_message": commands.excerpt(str(a.get("error") or ""), 500),
        "duration_ms": tools.non_negative(as_int(a.get("duration_ms"))),
    }, meta)]


def _user_prompt(a: Mapping[str, Any]) -> list[Draft]:
    prompt = as_text(a.get("prompt"))
    length = as_int(a.get("prompt_length"))
    return [Draft("user.prompt", {
        "prompt_length": length if length is not None and length >= 0 else len(prompt),
        "prompt_excerpt": commands.excerpt(prompt, 200),
    })]


def _tool_result(a: Mapping[str, Any]) -> list[Draft]:
    tool = as_str(a.get("tool_name")) or tools.UNKNOWN
    params: Any = a.get("tool_parameters")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    tool_input = dict(params) if isinstance(params, dict) else {}
    if tool == "Bash" and "command" not in tool_input:
        command = as_str(tool_input.get("full_command")) or as_str(tool_input.get("bash_command"))
        if command:
            tool_input["command"] = command
    error = as_str(a.get("error"))
    outcome = ToolOutcome(failed=not _truthy(a.get("success")), error=error,
                          duration_ms=tools.non_negative(as_int(a.get("duration_ms"))))
    drafts = tools.tool_result(tool, tool_input, {}, outcome)
    for draft in drafts:
        draft.metadata.setdefault("tool", tool)
        for key in ("decision", "source", "tool_result_size_bytes"):
            if a.get(key) not in (None, ""):
                draft.metadata[f"tool.{key}"] = str(a[key])
    return drafts


_LOG_MAPPERS: Mapping[str, Callable[[Mapping[str, Any]], list[Draft]]] = {
    "api_request": _api_request,
    "api_error": _api_error,
    "user_prompt": _user_prompt,
    "tool_result": _tool_result,
}


def log_event_name(body: Any, attrs: Mapping[str, Any], event_name: str) -> str:
    """Claude Code's event name without the ``claude_code.`` prefix, from wherever it is set."""
    name = event_name or as_str(attrs.get("event.name")) or (body if isinstance(body, str) else "")
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def map_logs(request: ExportLogsServiceRequest, received_us: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        resource_bytes = rl.resource.SerializeToString(deterministic=True)
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                attrs = attributes(rec.attributes)
                name = log_event_name(any_value(rec.body), attrs, rec.event_name)
                mapper = _LOG_MAPPERS.get(name)
                drafts = mapper(attrs) if mapper else [Draft("other", {
                    "name": f"{_PREFIX}{name}" if name else "otel.log",
                    "json": tools.other_json({"attributes": attrs, "body": any_value(rec.body)}),
                })]
                base = rec.SerializeToString(deterministic=True)
                for i, draft in enumerate(drafts):
                    events.append(model.new_event(
                        draft.event_type, _session(attrs, resource), draft.payload,
                        agent=AGENT, source=model.Source.OTLP.value, severity=draft.severity,
                        timestamp_us=_timestamp(rec.time_unix_nano, rec.observed_time_unix_nano,
                                                received_us),
                        event_id=_id(resource_bytes, base, draft.event_type.encode(), bytes([i])),
                        prompt_id=as_str(attrs.get("prompt.id")),
                        tool_use_id=as_str(attrs.get("tool_use_id")),
                        trace_context=_trace_context(rec.trace_id, rec.span_id),
                        metadata=_metadata(attrs, resource, **{"otel.event": name}, **draft.metadata),
                    ))
    return events


# -- metrics ----------------------------------------------------------------------------------

def _points(metric: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    kind = metric.WhichOneof("data")
    if kind in ("sum", "gauge"):
        data = getattr(metric, kind)
        for point in data.data_points:
            value = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
            info = {"kind": kind, "value": value}
            if kind == "sum":
                info["temporality"] = AggregationTemporality.Name(data.aggregation_temporality)
                info["monotonic"] = data.is_monotonic
            yield point, info
    elif kind in ("histogram", "exponential_histogram"):
        data = getattr(metric, kind)
        for point in data.data_points:
            yield point, {"kind": kind, "count": point.count, "sum": point.sum,
                          "temporality": AggregationTemporality.Name(data.aggregation_temporality)}
    elif kind == "summary":
        for point in metric.summary.data_points:
            yield point, {"kind": kind, "count": point.count, "sum": point.sum}


def map_metrics(request: ExportMetricsServiceRequest, received_us: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes)
        resource_bytes = rm.resource.SerializeToString(deterministic=True)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point, info in _points(metric):
                    attrs = attributes(point.attributes)
                    doc = {**info, "unit": metric.unit, "attributes": attrs,
                           "start_time_us": point.start_time_unix_nano // 1000}
                    events.append(model.new_event(
                        "otel.metric", _session(attrs, resource),
                        {"name": metric.name or "otel.metric", "json": tools.other_json(doc)},
                        agent=AGENT, source=model.Source.OTLP.value,
                        severity=model.Severity.DEBUG.value,
                        timestamp_us=_timestamp(point.time_unix_nano, 0, received_us),
                        event_id=_id(resource_bytes, metric.name.encode(),
                                     point.SerializeToString(deterministic=True)),
                        metadata=_metadata(attrs, resource, **{"otel.metric": metric.name}),
                    ))
    return events


# -- traces -----------------------------------------------------------------------------------

def map_traces(request: ExportTraceServiceRequest, received_us: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                attrs = attributes(span.attributes)
                duration = (span.end_time_unix_nano - span.start_time_unix_nano) // 1_000_000
                doc = {"kind": span.kind, "duration_ms": max(0, duration),
                       "status_code": span.status.code,
                       "status_message": commands.excerpt(span.status.message, 500),
                       "parent_span_id": span.parent_span_id.hex() or None, "attributes": attrs}
                events.append(model.new_event(
                    "trace.span", _session(attrs, resource),
                    {"name": span.name or "span", "json": tools.other_json(doc)},
                    agent=AGENT, source=model.Source.OTLP.value,
                    severity=model.Severity.DEBUG.value,
                    timestamp_us=_timestamp(span.start_time_unix_nano, 0, received_us),
                    event_id=_id(span.trace_id, span.span_id, b"span"),
                    prompt_id=as_str(attrs.get("prompt.id")),
                    tool_use_id=as_str(attrs.get("tool_use_id")),
                    # Exporters only send sampled spans.
                    trace_context=_trace_context(span.trace_id, span.span_id, True),
                    metadata=_metadata(attrs, resource, **{"otel.span": span.name}),
                ))
    return events


MAPPERS: Mapping[str, Callable[[Any, int], list[dict[str, Any]]]] = {
    "logs": map_logs, "metrics": map_metrics, "traces": map_traces,
}
