"""Row mapping of every payload family, pattern alerts and dead letters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumers.clickhouse.rows import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    PATTERN_ALERT_COLUMNS,
    dead_letter_row,
    event_row,
    pattern_alert_row,
)
from pipeline import model
from pipeline.errors import ErrorKind, ItemError

TS = 1_764_000_000_123_456


def row_of(event_type: str, payload: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    event = model.new_event(event_type, "sess-1", payload, timestamp_us=TS, **kw)
    row = event_row(event, "topic.a", 3, 42)
    assert len(row) == len(EVENT_COLUMNS)
    return dict(zip(EVENT_COLUMNS, row, strict=True))


def test_envelope_columns() -> None:
    r = row_of("notification", {"message": "hi"}, task_id="t1", prompt_id="p1", tool_use_id="u1",
               metadata={"k": "v"},
               trace_context={"trace_id": "a" * 32, "span_id": "b" * 16})
    assert r["timestamp"] == TS // 1_000_000 and r["ts_us"] == TS
    assert r["session_id"] == "sess-1" and r["event_type"] == "notification"
    assert r["agent"] == "claude-code" and r["source"] == "sdk" and r["severity"] == "info"
    assert (r["task_id"], r["prompt_id"], r["tool_use_id"]) == ("t1", "p1", "u1")
    assert (r["trace_id"], r["span_id"]) == ("a" * 32, "b" * 16)
    assert r["schema_version"] == model.SCHEMA_VERSION and r["payload_type"] == "Notification"
    assert json.loads(r["metadata"]) == {"k": "v"}
    assert json.loads(r["payload"])["message"] == "hi"
    assert (r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) == ("topic.a", 3, 42)
    assert r["redacted_fields"] == [] and r["file_path"] == "" and r["exit_code"] is None


def test_file_event() -> None:
    r = row_of("file.write", {"path": "src/a.py", "size_bytes": 10, "lines_added": 5,
                              "lines_removed": 2, "duration_us": 2500})
    assert (r["file_path"], r["file_size_bytes"], r["lines_added"], r["lines_removed"]) == (
        "src/a.py", 10, 5, 2)
    assert r["duration_ms"] == 2


def test_command_event() -> None:
    r = row_of("command.executed", {"binary": "pytest", "args": ["-q"], "exit_code": 1,
                                    "duration_ms": 900, "cpu_user_ms": 30, "cpu_system_ms": 12,
                                    "peak_memory_mib": 55.5})
    assert r["command_binary"] == "pytest" and r["command_args"] == ["-q"]
    assert (r["exit_code"], r["duration_ms"], r["cpu_time_ms"], r["peak_memory_mib"]) == (
        1, 900, 42, 55.5)


def test_command_without_cpu_keeps_null() -> None:
    r = row_of("command.executed", {"binary": "ls"})
    assert r["cpu_time_ms"] is None and r["exit_code"] is None and r["duration_ms"] is None


def test_test_event() -> None:
    r = row_of("test.executed", {"suite": "unit", "test_name": "test_x", "outcome": "failed",
                                 "duration_ms": 12, "coverage_pct": 80.0})
    assert (r["test_suite"], r["test_name"], r["test_outcome"], r["duration_ms"],
            r["coverage_pct"]) == ("unit", "test_x", "failed", 12, 80.0)


def test_build_event() -> None:
    r = row_of("build.completed", {"component": "api", "build_type": "release",
                                   "outcome": "failure", "duration_ms": 3000})
    assert (r["build_component"], r["build_type"], r["build_outcome"], r["duration_ms"]) == (
        "api", "release", "failure", 3000)


def test_network_request() -> None:
    r = row_of("network.request", {"protocol": "https", "domain": "pypi.org", "endpoint": "/simple",
                                   "status_code": 200, "bytes_sent": 10, "bytes_received": 2000,
                                   "duration_ms": 80})
    assert (r["network_protocol"], r["network_domain"], r["network_endpoint"], r["status_code"],
            r["bytes_sent"], r["bytes_received"], r["duration_ms"]) == (
        "https", "pypi.org", "/simple", 200, 10, 2000, 80)


def test_llm_request() -> None:
    r = row_of("llm.request", {"model": "claude-opus", "input_tokens": 100, "output_tokens": 20,
                               "cache_read_tokens": 5, "cache_creation_tokens": 7,
                               "cost_usd": 0.25, "duration_ms": 1500, "request_id": "req_1"})
    assert (r["model"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
            r["cache_creation_tokens"], r["cost_usd"], r["duration_ms"], r["request_id"]) == (
        "claude-opus", 100, 20, 5, 7, 0.25, 1500, "req_1")


def test_resource_sample() -> None:
    r = row_of("resource.sample", {"memory_mib": 512.0, "cpu_pct": 33.0})
    assert (r["memory_mib"], r["cpu_pct"]) == (512.0, 33.0)
    assert r["severity"] == "debug"


def test_agent_task_failed() -> None:
    r = row_of("agent.task.failed", {"agent_name": "main", "exit_code": 2, "duration_ms": 10,
                                     "error_type": "AssertionError", "error_message": "boom"})
    assert (r["exit_code"], r["duration_ms"], r["error_type"], r["error_message"]) == (
        2, 10, "AssertionError", "boom")
    assert r["severity"] == "error"


def test_session_event() -> None:
    r = row_of("session.ended", {"reason": "exit", "model": "sonnet", "duration_ms": 60_000})
    assert (r["model"], r["duration_ms"]) == ("sonnet", 60_000)
    assert json.loads(r["payload"])["reason"] == "exit"


@pytest.mark.parametrize(("event_type", "payload", "short"), [
    ("agent.state.transition", {"from_state": "idle", "to_state": "busy"}, "AgentStateTransition"),
    ("user.prompt", {"prompt_length": 12, "prompt_excerpt": "fix it"}, "UserPrompt"),
    ("notification", {"message": "m"}, "Notification"),
    ("custom.thing", {"json": '{"a":1}'}, "OtherEvent"),
])
def test_families_without_typed_columns_keep_their_payload(event_type: str, payload: dict[str, Any],
                                                           short: str) -> None:
    r = row_of(event_type, payload)
    assert r["payload_type"] == short
    body = json.loads(r["payload"])
    for key, value in payload.items():
        assert body[key] == value


def test_redacted_fields_are_carried() -> None:
    event = model.new_event("command.executed", "s", {"binary": "curl"}, timestamp_us=TS)
    event["redacted_fields"] = ["payload.args.1"]
    r = dict(zip(EVENT_COLUMNS, event_row(event, "t", 0, 0), strict=True))
    assert r["redacted_fields"] == ["payload.args.1"]


@pytest.mark.parametrize("mutate", [
    lambda e: e.update(timestamp=-5),
    lambda e: e.update(timestamp=2**40 * 1_000_000),
    lambda e: e["payload"][1].update(exit_code=2**40),
    lambda e: e.pop("event_id"),
    lambda e: e.update(payload=None),
])
def test_unstorable_events_raise_sink_rejected(mutate: Any) -> None:
    event = model.new_event("command.executed", "s", {"binary": "x"}, timestamp_us=TS)
    mutate(event)
    with pytest.raises(ItemError) as info:
        event_row(event, "t", 0, 0)
    assert info.value.kind == ErrorKind.SINK_REJECTED


def alert() -> dict[str, Any]:
    return {"alert_id": "a-1", "pattern": "retry_loop", "session_id": "s", "agent": "cc",
            "severity": "warning", "window_start": TS, "window_end": TS + 60_000_000,
            "evidence_event_ids": ["e1", "e2"], "message": "looping",
            "suggested_mitigation": None, "detected_at": TS + 61_000_000}


def test_pattern_alert_row() -> None:
    r = dict(zip(PATTERN_ALERT_COLUMNS, pattern_alert_row(alert(), "p", 1, 9), strict=True))
    assert r["detected_at"] == (TS + 61_000_000) // 1_000_000 and r["window_start_us"] == TS
    assert r["evidence_event_ids"] == ["e1", "e2"] and r["suggested_mitigation"] == ""
    assert (r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) == ("p", 1, 9)


def test_pattern_alert_without_id_is_rejected() -> None:
    bad = alert()
    del bad["alert_id"]
    with pytest.raises(ItemError):
        pattern_alert_row(bad, "p", 0, 0)


def test_dead_letter_row() -> None:
    letter = {"original_bytes": b"\xc3\x01xyz", "original_text": None, "original_truncated": False,
              "source_topic": "events", "source_partition": 2, "source_offset": 77,
              "error_kind": "decode_error", "error_message": "bad", "first_seen": TS,
              "attempts": 1, "session_id": None, "event_id": "e", "stage": "processor.validate"}
    r = dict(zip(DEAD_LETTER_COLUMNS, dead_letter_row(letter, "dlq", 0, 5), strict=True))
    assert r["original_bytes"] == b"\xc3\x01xyz" and r["original_text"] == ""
    assert (r["source_topic"], r["source_partition"], r["source_offset"]) == ("events", 2, 77)
    assert r["first_seen"] == TS // 1_000_000 and r["stage"] == "processor.validate"
    assert r["session_id"] == "" and r["original_truncated"] == 0
