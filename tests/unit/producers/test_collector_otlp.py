"""OTLP decoding and mapping, on requests built by the real opentelemetry-sdk encoders."""

from __future__ import annotations

import json
from typing import Any

import pytest
from claude_otel import SESSION, log_request, metric_request, span_request
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.serde import AvroSerde
from pipeline.validation import validate_event
from producers.collector import otlp

T0 = 1_760_000_000_000_000
SERDE = AvroSerde()


def body(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event["payload"][1])


def check_all(events: list[dict[str, Any]]) -> None:
    for event in events:
        validate_event(event)
        assert SERDE.decode_event(SERDE.encode_event(event)) == event
        assert event["source"] == "otlp"


def logs(request: ExportLogsServiceRequest | None = None) -> list[dict[str, Any]]:
    data = (request or log_request()).SerializeToString()
    return otlp.MAPPERS["logs"](otlp.decode_request("logs", data, "application/x-protobuf"), T0)


def test_claude_code_events_map_to_their_families() -> None:
    events = logs()
    check_all(events)
    assert [e["event_type"] for e in events] == [
        "user.prompt", "llm.request", "other", "command.executed", "test.executed", "file.write",
        "agent.task.failed", "other"]
    assert {e["session_id"] for e in events} == {SESSION}
    assert all(e["prompt_id"] == "p-1" for e in events[:-1])


def test_api_request_is_an_llm_request_with_tokens_and_cost() -> None:
    llm = logs()[1]
    assert body(llm) == {"model": "claude-sonnet-4-5", "input_tokens": 1200, "output_tokens": 350,
                         "cache_read_tokens": 9000, "cache_creation_tokens": 100,
                         "cost_usd": 0.0123, "duration_ms": 2345, "request_id": "req_011"}
    assert llm["metadata"]["app.version"] == "2.1.0"
    # Account identifiers are not copied into events.
    assert "user.account_uuid" not in llm["metadata"]


def test_tool_results_reuse_the_tool_mapping() -> None:
    events = logs()
    command, test, edit = events[3], events[4], events[5]
    assert body(command)["binary"] == "pytest" and body(command)["exit_code"] == 0
    assert body(command)["duration_ms"] == 812
    assert command["metadata"]["tool.tool_result_size_bytes"] == "120"
    assert body(test)["outcome"] == "passed"
    assert edit["metadata"]["outcome"] == "failed"
    assert "String to replace not found" in body(edit)["reason"]


def test_api_error_is_a_failed_task() -> None:
    error = logs()[6]
    assert body(error)["error_type"] == "http_529"
    assert body(error)["error_message"] == "Overloaded"
    assert error["metadata"]["attempt"] == "2"
    assert error["severity"] == "error"


def test_unknown_events_are_kept() -> None:
    decision, mystery = logs()[2], logs()[7]
    assert body(decision)["name"] == "claude_code.tool_decision"
    assert body(mystery)["name"] == "claude_code.mystery_event"
    assert json.loads(body(mystery)["json"])["attributes"]["foo"] == "bar"


def test_json_and_protobuf_give_the_same_events() -> None:
    request = log_request()
    from_json = otlp.MAPPERS["logs"](
        otlp.decode_request("logs", otlp.to_json(request), "application/json"), T0)
    assert from_json == logs(request)


def test_ids_are_stable_across_a_resend_and_distinct_within_a_batch() -> None:
    request = log_request().SerializeToString()
    first = otlp.map_logs(otlp.decode_request("logs", request, "application/x-protobuf"), T0)
    again = otlp.map_logs(otlp.decode_request("logs", request, "application/x-protobuf"), T0 + 9)
    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    assert len({e["event_id"] for e in first}) == len(first)


def test_metrics_become_one_event_per_data_point() -> None:
    request = metric_request()
    events = otlp.map_metrics(
        otlp.decode_request("metrics", request.SerializeToString(), "application/x-protobuf"), T0)
    check_all(events)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        assert event["event_type"] == "otel.metric" and event["session_id"] == SESSION
        by_name.setdefault(body(event)["name"], []).append(json.loads(body(event)["json"]))
    assert sorted(p["attributes"]["type"] for p in by_name["claude_code.token.usage"]) == [
        "cacheRead", "input", "output"]
    assert {p["value"] for p in by_name["claude_code.token.usage"]} == {1200, 350, 9000}
    assert by_name["claude_code.cost.usage"][0]["value"] == pytest.approx(0.0123)
    assert by_name["claude_code.cost.usage"][0]["unit"] == "USD"
    lines = {p["attributes"]["type"]: p["value"] for p in by_name["claude_code.lines_of_code.count"]}
    assert lines == {"added": 12, "removed": 3}
    json_events = otlp.map_metrics(
        otlp.decode_request("metrics", otlp.to_json(request), "application/json"), T0)
    assert json_events == events


def test_spans_carry_their_trace_context() -> None:
    request = span_request()
    events = otlp.map_traces(
        otlp.decode_request("traces", request.SerializeToString(), "application/x-protobuf"), T0)
    check_all(events)
    names = {body(e)["name"]: e for e in events}
    child, parent = names["claude_code.llm_request"], names["claude_code.interaction"]
    assert child["trace_context"]["trace_id"] == parent["trace_context"]["trace_id"]
    assert json.loads(body(child)["json"])["parent_span_id"] == parent["trace_context"]["span_id"]
    json_events = otlp.map_traces(
        otlp.decode_request("traces", otlp.to_json(request), "application/json"), T0)
    assert json_events == events


@pytest.mark.parametrize(("signal", "data", "content_type"), [
    ("logs", b"\x0a\xff\xff\xff", "application/x-protobuf"),
    ("metrics", b"not json", "application/json"),
    ("traces", b"[1, 2]", "application/json"),
    ("logs", b'{"resourceLogs": 5}', "application/json"),
    ("logs", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
     "application/json"),
])
def test_garbage_is_a_decode_error(signal: str, data: bytes, content_type: str) -> None:
    with pytest.raises(otlp.OtlpDecodeError):
        otlp.decode_request(signal, data, content_type)


def test_records_without_time_or_session_still_map() -> None:
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "claude_code.api_request"},
         "attributes": [{"key": "model", "value": {"stringValue": "m"}},
                        {"key": "input_tokens", "value": {"stringValue": "7"}},
                        {"key": "cost_usd", "value": {"stringValue": "nan"}}]}]}]}]}
    [event] = otlp.map_logs(
        otlp.decode_request("logs", json.dumps(doc).encode(), "application/json"), T0)
    validate_event(event)
    assert event["timestamp"] == T0 and event["session_id"] == "unknown"
    assert body(event)["input_tokens"] == 7 and body(event)["cost_usd"] is None


def test_responses_match_the_request_encoding() -> None:
    data, ctype = otlp.encode_response("logs", as_json=True)
    assert ctype == "application/json" and json.loads(data) == {}
    data, ctype = otlp.encode_response("metrics", as_json=False)
    assert ctype == "application/x-protobuf" and data == b""
