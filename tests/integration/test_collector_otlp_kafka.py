"""Claude-Code-shaped telemetry sent by the real OTLP/HTTP exporters, read back from Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from collector_support import Running, collector_settings, consume, running_collector
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from pipeline.validation import validate_event
from producers.collector import otlp

pytestmark = pytest.mark.integration

SESSION = "0d3f2a9c-1b7e-4c2d-8e5f-6a7b8c9d0e1f"
RESOURCE = Resource.create({"service.name": "claude-code", "service.version": "2.1.0"})
STANDARD = {"session.id": SESSION, "app.version": "2.1.0", "terminal.type": "vscode"}
API_REQUEST = {"event.name": "api_request", "model": "claude-opus-4-1", "cost_usd": 0.5,
               "duration_ms": 4000, "input_tokens": 10, "output_tokens": 2000,
               "cache_read_tokens": 30000, "cache_creation_tokens": 500, "prompt.id": "p-9"}
TOOL_RESULT = {"event.name": "tool_result", "tool_name": "Bash", "success": "false",
               "duration_ms": 900, "error": "Exit code 1", "prompt.id": "p-9",
               "tool_parameters": json.dumps({"bash_command": "go",
                                              "full_command": "go test ./..."})}


def emit_logs(logger_provider: LoggerProvider) -> None:
    logger = logger_provider.get_logger("com.anthropic.claude_code.events")
    for attrs in (API_REQUEST, TOOL_RESULT):
        name = f"claude_code.{attrs['event.name']}"
        logger.emit(body=name, event_name=name, attributes={**STANDARD, **attrs})


def send_with_exporters(collector: Running) -> None:
    """What Claude Code does with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (gzip on)."""
    logs = LoggerProvider(resource=RESOURCE)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
        endpoint=collector.url("/v1/logs"), compression=Compression.Gzip)))
    emit_logs(logs)
    logs.shutdown()

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=collector.url("/v1/metrics")), export_interval_millis=3_600_000)
    meters = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = meters.get_meter("com.anthropic.claude_code")
    meter.create_counter("claude_code.token.usage", unit="tokens").add(
        2000, {**STANDARD, "type": "output", "model": "claude-opus-4-1"})
    meter.create_counter("claude_code.cost.usage", unit="USD").add(
        0.5, {**STANDARD, "model": "claude-opus-4-1"})
    meter.create_counter("claude_code.lines_of_code.count").add(7, {**STANDARD, "type": "added"})
    meters.shutdown()  # one collection, one export

    traces = TracerProvider(resource=RESOURCE)
    traces.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=collector.url("/v1/traces"))))
    tracer = traces.get_tracer("com.anthropic.claude_code.tracing")
    with tracer.start_as_current_span("claude_code.interaction", attributes=STANDARD):
        pass
    traces.shutdown()


def json_logs_body() -> bytes:
    """The same records as OTLP/JSON (http/json), encoded per the spec from SDK records."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    emit_logs(provider)
    provider.shutdown()
    return otlp.to_json(encode_logs(memory.get_finished_logs()))


async def test_native_telemetry_reaches_the_ingest_topic(
        tmp_path: Path, kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic("ingest", partitions=3)
    settings = collector_settings(tmp_path, kafka_bootstrap, topic)
    async with running_collector(settings) as collector:
        # The exporters are synchronous HTTP clients: keep them off the collector's loop.
        await asyncio.to_thread(send_with_exporters, collector)
        async with aiohttp.ClientSession() as http:
            resp = await http.post(collector.url("/v1/logs"), data=json_logs_body(),
                                   headers={"Content-Type": "application/json"})
            assert resp.status == 200 and await resp.json() == {}
        assert await asyncio.to_thread(collector.publisher.flush, 30) == 0
        assert collector.metric("agentwatch_collector_otlp_metric_points_total",
                                metric="claude_code.token.usage") == 1

    # logs: 2 records -> llm.request + command.executed + test.executed, twice (protobuf, JSON);
    # metrics: 3 points; traces: 1 span.
    messages = await asyncio.to_thread(consume, kafka_bootstrap, topic, 10)
    assert len(messages) == 10
    events = [m.event for m in messages]
    for message in messages:
        validate_event(message.event)
        assert message.key == SESSION.encode() and message.event["source"] == "otlp"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["event_type"], []).append(event)
    assert sorted(by_type) == ["command.executed", "llm.request", "otel.metric", "test.executed",
                               "trace.span"]

    [llm, llm_json] = by_type["llm.request"]
    assert llm["payload"][1] == {"model": "claude-opus-4-1", "input_tokens": 10,
                                 "output_tokens": 2000, "cache_read_tokens": 30000,
                                 "cache_creation_tokens": 500, "cost_usd": 0.5,
                                 "duration_ms": 4000, "request_id": None}
    assert llm["prompt_id"] == "p-9"
    assert llm_json["payload"] == llm["payload"]
    [test, _] = by_type["test.executed"]
    assert test["payload"][1]["suite"] == "go test" and test["payload"][1]["outcome"] == "failed"
    [command, _] = by_type["command.executed"]
    assert command["payload"][1]["exit_code"] == 1

    points = {e["payload"][1]["name"]: json.loads(e["payload"][1]["json"])
              for e in by_type["otel.metric"]}
    assert points["claude_code.token.usage"]["value"] == 2000
    assert points["claude_code.token.usage"]["attributes"]["type"] == "output"
    assert points["claude_code.cost.usage"]["value"] == 0.5
    assert points["claude_code.lines_of_code.count"]["value"] == 7

    [span] = by_type["trace.span"]
    assert span["payload"][1]["name"] == "claude_code.interaction"
    assert len(span["trace_context"]["trace_id"]) == 32
