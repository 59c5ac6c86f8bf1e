"""Round trip of one realistic event per payload family, and of the other topic records."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import model
from pipeline.serde import AvroSerde

SESSION = "0b7d5b4e-8a43-4a55-9d1c-6c1e7f3a2b10"

PAYLOADS: dict[str, tuple[str, dict[str, Any]]] = {
    "agent.task.failed": (model.AGENT_TASK_EVENT, {
        "agent_name": "planner", "task_type": "refactor", "input_description": "split module",
        "input_hash": "ab" * 32, "files_count": 3, "progress_pct": 40.5, "current_step": "edit",
        "phase": "implement", "milestones": ["plan", "edit"], "duration_ms": 1234,
        "exit_code": 1, "error_type": "TypeError", "error_message": "bad arg",
        "error_file": "a.py", "error_line": 10, "error_column": 4, "error_stacktrace": "tb",
    }),
    "agent.state.transition": (model.AGENT_STATE_TRANSITION, {
        "agent_name": "planner", "from_state": "idle", "to_state": "working", "reason": "prompt",
    }),
    "file.write": (model.FILE_EVENT, {
        "path": "src/app.py", "size_bytes": 2048, "lines_added": 12, "lines_removed": 3,
        "checksum_sha256": "0f" * 32, "duration_us": 850, "reason": "edit",
        "justification": "fix bug",
    }),
    "file.search": (model.FILE_EVENT, {"path": ".", "pattern": "*.py", "files_matched": 41}),
    "command.executed": (model.COMMAND_EVENT, {
        "binary": "pytest", "args": ["-q", "tests"], "cwd": "/repo", "env_vars_count": 42,
        "exit_code": 1, "duration_ms": 5300, "cpu_user_ms": 4000, "cpu_system_ms": 300,
        "peak_memory_mib": 210.5, "stdout_lines": 120, "stderr_lines": 2,
        "stdout_excerpt": "1 failed", "stderr_excerpt": "", "network_requests": ["pypi.org"],
    }),
    "test.executed": (model.TEST_EVENT, {
        "suite": "unit", "test_name": "test_x", "outcome": "failed", "duration_ms": 12,
        "coverage_pct": 81.2,
    }),
    "build.completed": (model.BUILD_EVENT, {
        "component": "web", "build_type": "release", "outcome": "success", "duration_ms": 90_000,
    }),
    "network.request": (model.NETWORK_REQUEST, {
        "protocol": "https", "domain": "api.github.com", "endpoint": "/repos", "status_code": 200,
        "bytes_sent": 300, "bytes_received": 40_000, "duration_ms": 180,
    }),
    "resource.sample": (model.RESOURCE_SAMPLE, {
        "memory_mib": 512.0, "cpu_pct": 73.5, "memory_limit_mib": 4096.0, "cpu_limit_pct": 200.0,
    }),
    "llm.request": (model.LLM_REQUEST, {
        "model": "claude-sonnet-4-5", "input_tokens": 12_000, "output_tokens": 800,
        "cache_read_tokens": 9_000, "cache_creation_tokens": 500, "cost_usd": 0.0421,
        "duration_ms": 5400, "request_id": "req_011CQ",
    }),
    "session.started": (model.SESSION_EVENT, {
        "reason": "startup", "cwd": "/repo", "model": "claude-opus-4-1",
        "permission_mode": "default", "transcript_path": "/home/u/.claude/p/x.jsonl",
    }),
    "session.stalled": (model.SESSION_EVENT, {"idle_ms": 300_000}),
    "user.prompt": (model.USER_PROMPT, {"prompt_length": 240, "prompt_excerpt": "fix the tests"}),
    "notification": (model.NOTIFICATION, {
        "message": "Claude needs your permission to use Bash", "notification_type": "permission",
        "title": "Permission",
    }),
    "mcp.tool.called": (model.OTHER_EVENT, {"name": "mcp.tool.called", "json": '{"tool": "x"}'}),
}


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


def test_samples_cover_every_payload_family() -> None:
    assert {name for name, _ in PAYLOADS.values()} == set(model.payload_record_names())


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_event_round_trip_per_family(serde: AvroSerde, event_type: str) -> None:
    event = model.new_event(
        event_type, SESSION, PAYLOADS[event_type], agent="claude-code", source="hook",
        task_id="task-1", metadata={"cwd": "/repo"}, prompt_id="p-1", tool_use_id="toolu_1",
        trace_context={"trace_id": "a" * 32, "span_id": "b" * 16, "sampled": True},
    )
    data = serde.encode_event(event)
    name, decoded = serde.decode(data)
    assert name == model.TELEMETRY_EVENT
    assert decoded == event
    assert decoded["payload"][0] == PAYLOADS[event_type][0]
    assert isinstance(decoded["timestamp"], int)
    assert serde.encode_event(decoded) == data
    assert serde.decode_event(data) == event


def test_minimal_event_gets_schema_defaults(serde: AvroSerde) -> None:
    event: dict[str, Any] = {
        "event_id": "5b0c2f0e-2a7f-4c47-bc3f-1d2a9f0e8c11", "event_type": "file.read",
        "timestamp": 1_760_000_000_000_000, "session_id": SESSION, "agent": "claude-code",
        "severity": "info", "source": "hook", "payload": (model.FILE_EVENT, {"path": "a.py"}),
    }
    decoded = serde.decode_event(serde.encode_event(event))
    assert decoded == model.new_event(
        "file.read", SESSION, (model.FILE_EVENT, {"path": "a.py"}), source="hook",
        severity="info", event_id=event["event_id"], timestamp_us=event["timestamp"],
    ) | {"schema_version": 1}


@pytest.mark.parametrize(("schema", "record"), [
    (model.WIDGET_UPDATE, {
        "session_id": SESSION, "widget": "tokens", "data_json": '{"input": 10}', "version": 7,
        "timestamp": 1_760_000_000_000_000, "agent": "claude-code",
    }),
    (model.PATTERN_ALERT, {
        "alert_id": "5b0c2f0e-2a7f-4c47-bc3f-1d2a9f0e8c11", "pattern": "retry_loop",
        "session_id": SESSION, "agent": "claude-code", "severity": "warning",
        "window_start": 1_760_000_000_000_000, "window_end": 1_760_000_060_000_000,
        "evidence_event_ids": ["e1", "e2"], "message": "same command failed 5 times",
        "suggested_mitigation": "stop and ask the user", "detected_at": 1_760_000_061_000_000,
    }),
    (model.DEAD_LETTER, {
        "original_bytes": b"\x00\x01", "original_text": None, "original_truncated": False,
        "source_topic": "agent.telemetry.ingest", "source_partition": 3, "source_offset": 99,
        "error_kind": "decode_error", "error_message": "bad magic",
        "first_seen": 1_760_000_000_000_000, "attempts": 1, "session_id": None,
        "event_id": None, "stage": "processor.validate",
    }),
])
def test_topic_records_round_trip(serde: AvroSerde, schema: str, record: dict[str, Any]) -> None:
    data = serde.encode(schema, record)
    assert serde.decode(data) == (schema, record)
    assert serde.encode(model.short_name(schema), record) == data
