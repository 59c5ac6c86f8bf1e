"""Each contract rule beyond Avro types fails with its own named Rule and ErrorKind."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import model
from pipeline.errors import ErrorKind, ValidationError
from pipeline.validation import (
    DEFAULT_MAX_FUTURE_US,
    MIN_TIMESTAMP_US,
    EventRuleError,
    Rule,
    validate_event,
)

NOW = 1_760_000_000_000_000
SESSION = "0b7d5b4e-8a43-4a55-9d1c-6c1e7f3a2b10"


def event(event_type: str = "file.write", payload: Any = None, **kw: Any) -> dict[str, Any]:
    body = {"path": "a.py", "lines_added": 3} if payload is None else payload
    return model.new_event(event_type, SESSION, body, timestamp_us=NOW, **kw)


def broken(rule: Rule, ev: dict[str, Any]) -> EventRuleError:
    with pytest.raises(EventRuleError) as info:
        validate_event(ev, now_us=NOW)
    assert info.value.rule is rule, info.value
    assert isinstance(info.value, ValidationError)
    return info.value


def test_valid_event_passes_unchanged() -> None:
    ev = event()
    assert validate_event(ev, now_us=NOW) == ev


def test_missing_severity_is_inferred_without_mutating_input() -> None:
    ev = event("agent.task.failed", {"exit_code": 2})
    del ev["severity"]
    out = validate_event(ev, now_us=NOW)
    assert out["severity"] == "error"
    assert "severity" not in ev


@pytest.mark.parametrize(("event_type", "payload", "severity"), [
    ("session.stalled", {}, "warning"),
    ("agent.task.progress", {"progress_pct": 10.0}, "debug"),
    ("command.executed", {"binary": "ls", "exit_code": 2}, "warning"),
    ("command.executed", {"binary": "ls", "exit_code": 0}, "info"),
    ("test.executed", {"suite": "u", "test_name": "t", "outcome": "failed"}, "warning"),
    ("build.completed", {"component": "c", "outcome": "failure"}, "error"),
    ("llm.request", {"model": "m"}, "info"),
])
def test_severity_inference(event_type: str, payload: dict[str, Any], severity: str) -> None:
    ev = event(event_type, payload)
    assert ev["severity"] == severity
    ev["severity"] = None
    assert validate_event(ev, now_us=NOW)["severity"] == severity


@pytest.mark.parametrize("field", ["event_id", "event_type", "session_id", "agent", "source"])
def test_missing_envelope_field(field: str) -> None:
    ev = event()
    del ev[field]
    err = broken(Rule.MISSING_FIELD, ev)
    assert err.kind is ErrorKind.SCHEMA_VIOLATION
    assert err.field == field


def test_wrong_type_and_empty() -> None:
    broken(Rule.WRONG_TYPE, event() | {"session_id": 12})
    broken(Rule.EMPTY_FIELD, event() | {"session_id": ""})
    broken(Rule.WRONG_TYPE, event() | {"timestamp": 1.7e15})
    broken(Rule.WRONG_TYPE, event() | {"payload": {"path": "a"}})
    broken(Rule.WRONG_TYPE, event(payload={"path": "a", "lines_added": "3"}))


@pytest.mark.parametrize(("rule", "changes"), [
    (Rule.BAD_EVENT_ID, {"event_id": "not-a-uuid"}),
    (Rule.BAD_EVENT_TYPE, {"event_type": "File.Write"}),
    (Rule.BAD_EVENT_TYPE, {"event_type": "file..write"}),
    (Rule.UNKNOWN_SEVERITY, {"severity": "fatal"}),
    (Rule.UNKNOWN_SOURCE, {"source": "carrier-pigeon"}),
    (Rule.UNKNOWN_PAYLOAD, {"payload": ("dev.agentwatch.Nope", {})}),
    (Rule.PAYLOAD_MISMATCH, {"payload": (model.COMMAND_EVENT, {"binary": "ls"})}),
    (Rule.TIMESTAMP_TOO_OLD, {"timestamp": NOW // 1000}),
    (Rule.TIMESTAMP_IN_FUTURE, {"timestamp": NOW * 1000}),
    (Rule.TIMESTAMP_IN_FUTURE, {"timestamp": NOW + DEFAULT_MAX_FUTURE_US + 1}),
    (Rule.BAD_TRACE_CONTEXT, {"trace_context": {"trace_id": "0" * 32, "span_id": "1" * 16}}),
    (Rule.BAD_TRACE_CONTEXT, {"trace_context": {"trace_id": "a" * 32, "span_id": "XYZ"}}),
])
def test_envelope_rules(rule: Rule, changes: dict[str, Any]) -> None:
    broken(rule, event() | changes)


def test_timestamp_bounds_are_inclusive() -> None:
    validate_event(event() | {"timestamp": MIN_TIMESTAMP_US}, now_us=NOW)
    validate_event(event() | {"timestamp": NOW + DEFAULT_MAX_FUTURE_US}, now_us=NOW)


@pytest.mark.parametrize(("rule", "event_type", "payload"), [
    (Rule.NEGATIVE_VALUE, "file.write", {"path": "a", "lines_added": -1}),
    (Rule.NEGATIVE_VALUE, "file.write", {"path": "a", "lines_removed": -4}),
    (Rule.NEGATIVE_VALUE, "llm.request", {"model": "m", "output_tokens": -1}),
    (Rule.NEGATIVE_VALUE, "llm.request", {"model": "m", "cost_usd": -0.01}),
    (Rule.NEGATIVE_VALUE, "command.executed", {"binary": "ls", "duration_ms": -5}),
    (Rule.OUT_OF_RANGE, "agent.task.progress", {"progress_pct": 100.5}),
    (Rule.OUT_OF_RANGE, "resource.sample", {"memory_mib": float("nan"), "cpu_pct": 1.0}),
    (Rule.BAD_SHA256, "file.write", {"path": "a", "checksum_sha256": "AB" * 32}),
    (Rule.BAD_SHA256, "file.write", {"path": "a", "checksum_sha256": "ab" * 31}),
    (Rule.EMPTY_FIELD, "file.read", {"path": ""}),
    (Rule.EMPTY_FIELD, "agent.state.transition", {"from_state": "", "to_state": "x"}),
    (Rule.BAD_JSON, "mcp.call", {"name": "mcp.call", "json": "{not json"}),
    (Rule.BAD_JSON, "other", {"name": "deep", "json": "[" * 100_000 + "]" * 100_000}),
])
def test_payload_rules(rule: Rule, event_type: str, payload: dict[str, Any]) -> None:
    err = broken(rule, event(event_type, payload))
    assert err.kind is ErrorKind.RULE_VIOLATION
    assert err.field.startswith("payload.")


def test_unknown_event_type_travels_as_other_event() -> None:
    ev = event("mcp.tool.called", {"json": '{"tool": "search"}'})
    assert ev["payload"][0] == model.OTHER_EVENT
    assert ev["payload"][1]["name"] == "mcp.tool.called"
    assert validate_event(ev, now_us=NOW) == ev


def test_new_action_of_known_category_keeps_its_family() -> None:
    assert model.payload_name_for("file.rename") == model.FILE_EVENT
    assert model.payload_name_for("agent.task.paused") == model.AGENT_TASK_EVENT
    assert model.payload_name_for("agent.other.x") == model.OTHER_EVENT
    assert model.payload_name_for("notification") == model.NOTIFICATION
