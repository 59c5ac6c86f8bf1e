"""Claude-Code-shaped telemetry made with the real opentelemetry-sdk, as OTLP export requests.

Attribute names follow Claude Code's monitoring docs (``claude_code.*`` events with
``event.name``, ``session.id``, ``prompt.id``...; metrics ``claude_code.token.usage`` etc.).
The SDK's own OTLP encoders build the protobuf requests the HTTP exporter would send.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SESSION = "5b0c6f4e-2f1a-4c55-9a0e-6f7d7c1e2a10"
RESOURCE = Resource.create({"service.name": "claude-code", "service.version": "2.1.0"})
STANDARD = {"session.id": SESSION, "app.version": "2.1.0", "terminal.type": "xterm-256color",
            "organization.id": "org-1", "user.account_uuid": "acct-1"}

LOG_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("user_prompt", {"prompt_length": 42, "prompt.id": "p-1"}),
    ("api_request", {"model": "claude-sonnet-4-5", "cost_usd": 0.0123, "duration_ms": 2345,
                     "input_tokens": 1200, "output_tokens": 350, "cache_read_tokens": 9000,
                     "cache_creation_tokens": 100, "prompt.id": "p-1",
                     "request_id": "req_011"}),
    ("tool_decision", {"tool_name": "Bash", "decision": "accept", "source": "config",
                       "prompt.id": "p-1"}),
    ("tool_result", {"tool_name": "Bash", "success": "true", "duration_ms": 812,
                     "decision_type": "accept", "decision_source": "config",
                     "tool_result_size_bytes": 120, "prompt.id": "p-1",
                     "tool_parameters": '{"bash_command":"pytest","full_command":"pytest -q tests",'
                                        '"timeout":120000,"description":"Run tests"}'}),
    ("tool_result", {"tool_name": "Edit", "success": "false", "duration_ms": 5,
                     "error": "String to replace not found in file", "prompt.id": "p-1"}),
    ("api_error", {"model": "claude-sonnet-4-5", "error": "Overloaded", "status_code": "529",
                   "duration_ms": 30000, "attempt": 2, "prompt.id": "p-1"}),
    ("mystery_event", {"foo": "bar"}),
]


def log_request(events: list[tuple[str, dict[str, Any]]] = LOG_EVENTS) -> ExportLogsServiceRequest:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("com.anthropic.claude_code.events", "2.1.0")
    for name, attrs in events:
        logger.emit(body=f"claude_code.{name}", event_name=f"claude_code.{name}",
                    attributes={**STANDARD, "event.name": name, **attrs})
    provider.shutdown()
    return encode_logs(exporter.get_finished_logs())


def metric_request() -> ExportMetricsServiceRequest:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("com.anthropic.claude_code", "2.1.0")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
    cost = meter.create_counter("claude_code.cost.usage", unit="USD")
    lines = meter.create_counter("claude_code.lines_of_code.count")
    for kind, value in (("input", 1200), ("output", 350), ("cacheRead", 9000)):
        tokens.add(value, {**STANDARD, "type": kind, "model": "claude-sonnet-4-5"})
    cost.add(0.0123, {**STANDARD, "model": "claude-sonnet-4-5"})
    lines.add(12, {**STANDARD, "type": "added"})
    lines.add(3, {**STANDARD, "type": "removed"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return encode_metrics(data)


def span_request() -> ExportTraceServiceRequest:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("com.anthropic.claude_code.tracing")
    with tracer.start_as_current_span("claude_code.interaction", attributes=STANDARD), \
            tracer.start_as_current_span("claude_code.llm_request",
                                         attributes={**STANDARD, "model": "claude-sonnet-4-5"}):
        pass
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())
