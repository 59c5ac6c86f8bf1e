"""Messages written with the previous schema version still decode, and old readers read new data."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipeline import model
from pipeline.schemas import SCHEMA_DIR, load_catalog, strip_logical_types
from pipeline.serde import AvroSerde

V1_PATH = SCHEMA_DIR / "previous" / "telemetry_event.v1.avsc"
SESSION = "0b7d5b4e-8a43-4a55-9d1c-6c1e7f3a2b10"


def v1_entry() -> Any:
    (entry,) = [e for e in load_catalog().entries() if e.path == V1_PATH]
    return entry


def v1_event() -> dict[str, Any]:
    return {
        "event_id": "5b0c2f0e-2a7f-4c47-bc3f-1d2a9f0e8c11", "event_type": "file.write",
        "timestamp": 1_700_000_000_000_000, "session_id": SESSION, "agent": "claude-code",
        "task_id": None, "severity": "info", "source": "hook",
        "metadata": {"k": "v"}, "schema_version": 1,
        "payload": ("dev.agentwatch.FileEvent", {
            "path": "a.py", "size_bytes": 10, "lines_added": 1, "lines_removed": 0,
            "pattern": None, "files_matched": None, "duration_us": 5, "reason": "edit",
        }),
    }


def test_previous_version_is_in_the_catalog_and_differs_from_current() -> None:
    entry = v1_entry()
    assert not entry.current
    assert entry.name == model.TELEMETRY_EVENT
    assert entry.fingerprint != load_catalog().current(model.TELEMETRY_EVENT).fingerprint


def test_message_written_with_v1_decodes_into_current_schema() -> None:
    entry = v1_entry()
    out = BytesIO()
    out.write(entry.header)
    schemaless_writer(out, entry.parsed, v1_event())
    name, decoded = AvroSerde().decode(out.getvalue())
    assert name == model.TELEMETRY_EVENT
    expected = v1_event() | {
        "trace_context": None, "redacted_fields": [], "prompt_id": None, "tool_use_id": None,
    }
    expected["payload"] = (model.FILE_EVENT, expected["payload"][1] | {
        "checksum_sha256": None, "justification": None,
    })
    assert decoded == expected


def test_v1_reader_reads_current_data_of_families_it_knows() -> None:
    event = model.new_event(
        "command.executed", SESSION, {"binary": "make", "exit_code": 0},
        trace_context={"trace_id": "a" * 32, "span_id": "b" * 16},
    )
    data = AvroSerde().encode_event(event)
    current = load_catalog().current(model.TELEMETRY_EVENT)
    v1 = parse_schema(strip_logical_types(json.loads(V1_PATH.read_text())))
    old: dict[str, Any] = schemaless_reader(  # type: ignore[assignment]
        BytesIO(data[len(current.header):]), current.parsed, v1,
        return_record_name=True, return_record_name_override=True,
    )
    assert old["payload"] == event["payload"]
    assert "trace_context" not in old
    assert old["event_id"] == event["event_id"]


def test_fingerprints_ignore_logical_types_and_docs() -> None:
    from pipeline.schemas import schema_fingerprint

    current = load_catalog().current(model.TELEMETRY_EVENT)
    raw = json.loads(current.path.read_text())
    assert schema_fingerprint(raw) == current.fingerprint
    assert schema_fingerprint(strip_logical_types(raw)) == current.fingerprint


def test_fingerprint_matches_the_spec_test_vector() -> None:
    from pipeline.schemas import schema_fingerprint

    assert int.from_bytes(schema_fingerprint("null"), "little") == 7195948357588979594
