from __future__ import annotations

from consumers.archive.clickhouse_source import row_to_event


def test_row_becomes_an_event_dict() -> None:
    row: tuple[object, ...] = (
           "e1", "file.write", 1_767_225_600_000_001, "s", "claude-code", "", "info", "hook",
           "a" * 32, "b" * 16, '{"k":"v"}', ["payload.path"], 2, "p1", "",
           "dev.agentwatch.FileEvent", '{"path": "x.py", "lines_added": 3}')
    event = row_to_event(row)
    assert event == {
        "event_id": "e1", "event_type": "file.write", "timestamp": 1_767_225_600_000_001,
        "session_id": "s", "agent": "claude-code", "task_id": None, "severity": "info",
        "source": "hook", "trace_context": {"trace_id": "a" * 32, "span_id": "b" * 16,
                                            "sampled": False},
        "metadata": {"k": "v"}, "redacted_fields": ["payload.path"], "schema_version": 2,
        "prompt_id": "p1", "tool_use_id": None,
        "payload": ("dev.agentwatch.FileEvent", {"path": "x.py", "lines_added": 3}),
    }


def test_short_payload_type_and_broken_json_are_tolerated() -> None:
    row: tuple[object, ...] = (
           "e1", "notification", 1, "s", "a", "", "info", "hook", "", "", "not json", [], 2, "",
           "", "Notification", "[1]")
    event = row_to_event(row)
    assert event["payload"] == ("dev.agentwatch.Notification", {})
    assert event["metadata"] == {} and event["trace_context"] is None
