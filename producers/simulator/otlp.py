"""Claude Code's per-request usage event as an OTLP logs request (what its OTel exporter sends).

One log record per API request, body ``claude_code.api_request``, attributes ``event.name``,
``session.id``, ``prompt.id``, ``model``, token counts, ``cost_usd``, ``duration_ms``,
``request_id``. Built in the OTLP/JSON mapping (camelCase, 64-bit ints as strings), which also
converts to the protobuf body ``http/protobuf`` exporters POST.
"""

from __future__ import annotations

from typing import Any

from producers.simulator.script import LlmUsage

SCOPE = "com.anthropic.claude_code.events"
JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"


def _attr(key: str, value: str | int | float) -> dict[str, Any]:
    # Claude Code's exporter sends event attribute values as strings; receivers parse numbers.
    return {"key": key, "value": {"stringValue": str(value)}}


def api_request_logs(
    *, session_id: str, prompt_id: str, request_id: str, usage: LlmUsage, duration_ms: int,
    time_unix_nano: int, version: str, user_id: str,
) -> dict[str, Any]:
    record = {
        "timeUnixNano": str(time_unix_nano),
        "observedTimeUnixNano": str(time_unix_nano),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": [
            _attr("event.name", "api_request"),
            _attr("event.timestamp", time_unix_nano // 1_000_000),
            _attr("session.id", session_id),
            _attr("prompt.id", prompt_id),
            _attr("user.id", user_id),
            _attr("terminal.type", "xterm-256color"),
            _attr("model", usage.model),
            _attr("input_tokens", usage.input_tokens),
            _attr("output_tokens", usage.output_tokens),
            _attr("cache_read_tokens", usage.cache_read_tokens),
            _attr("cache_creation_tokens", usage.cache_creation_tokens),
            _attr("cost_usd", f"{usage.cost_usd:.6f}"),
            _attr("duration_ms", duration_ms),
            _attr("request_id", request_id),
        ],
    }
    return {"resourceLogs": [{
        "resource": {"attributes": [
            _attr("service.name", "claude-code"),
            _attr("service.version", version),
            _attr("os.type", "linux"),
        ]},
        "scopeLogs": [{"scope": {"name": SCOPE, "version": version}, "logRecords": [record]}],
    }]}


def to_protobuf(logs_json: dict[str, Any]) -> bytes:
    """The ``ExportLogsServiceRequest`` bytes of an OTLP/JSON logs body."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    message = json_format.ParseDict(logs_json, ExportLogsServiceRequest())
    return bytes(message.SerializeToString())
