"""The JSON-lines rendering reads back into exactly the in-memory event dict."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from consumers.archive.jsonl import (
    event_from_line,
    event_to_line,
    gzip_bytes,
    iter_events,
    iter_lines,
)
from consumers.archive.testing import sample_session
from pipeline import model
from pipeline.errors import DecodeError
from pipeline.serde import AvroSerde


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


def _decoded(serde: AvroSerde, event: dict[str, Any]) -> dict[str, Any]:
    return serde.decode_event(serde.encode_event(event))


def test_every_family_round_trips_to_the_decoded_dict(serde: AvroSerde) -> None:
    events = sample_session("s-1", 40)
    events.append(model.new_event(
        "build.completed", "s-1", {"component": "web", "outcome": "failure"},
        trace_context={"trace_id": "a" * 32, "span_id": "b" * 16}, task_id="t1",
        prompt_id="p1", tool_use_id="toolu_1"))
    events.append(model.new_event("custom.thing", "s-1", {"json": '{"k": 1}'}))
    families = set()
    for event in events:
        decoded = _decoded(serde, event)
        back = event_from_line(event_to_line(decoded))
        assert back == decoded
        assert isinstance(back["payload"], tuple)
        families.add(back["payload"][0])
    assert len(families) >= 10


def test_line_is_one_json_object_with_payload_type() -> None:
    event = model.new_event("file.write", "s", {"path": "ü/ä.py", "lines_added": 1})
    line = event_to_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    doc = json.loads(line)
    assert doc["payload_type"] == model.FILE_EVENT
    assert doc["payload"]["path"] == "ü/ä.py"
    assert "ü".encode() in line  # UTF-8, not \u escapes


def test_floats_and_special_values_survive() -> None:
    event = model.new_event("resource.sample", "s", {"memory_mib": 0.1 + 0.2, "cpu_pct": float("nan")})
    back = event_from_line(event_to_line(event))
    assert back["payload"][1]["memory_mib"] == 0.1 + 0.2
    assert back["payload"][1]["cpu_pct"] != back["payload"][1]["cpu_pct"]  # NaN


@pytest.mark.parametrize("line", [b"not json", b"[1,2]", b'{"payload": {}}',
                                  b'{"payload_type": "x", "payload": 3}', b"\xff\xfe"])
def test_bad_lines_are_decode_errors(line: bytes) -> None:
    with pytest.raises(DecodeError):
        event_from_line(line)


def test_event_without_tuple_payload_is_refused() -> None:
    with pytest.raises(DecodeError):
        event_to_line({"event_id": "x", "payload": {"path": "a"}})


def test_gzip_stream_round_trip_and_truncation() -> None:
    events = sample_session("s-2", 50)
    data = gzip_bytes(event_to_line(e) for e in events)
    assert gzip.decompress(data).count(b"\n") == 50
    assert list(iter_events(data)) == events
    with pytest.raises(DecodeError):
        list(iter_lines(data[: len(data) // 2]))


def test_line_head_reads_id_type_and_time_with_or_without_the_fast_path() -> None:
    from consumers.archive.jsonl import line_head

    for event in sample_session("s-3", 12):
        assert line_head(event_to_line(event)) == (
            event["event_id"], event["event_type"], event["timestamp"])
    reordered = b'{"timestamp":5,"event_id":"x","event_type":"a","payload_type":"p","payload":{}}\n'
    assert line_head(reordered) == ("x", "a", 5)
    escaped = b'{"event_id":"x\\"y","event_type":"a","timestamp":7,"payload_type":"p","payload":{}}'
    assert line_head(escaped) == ('x"y', "a", 7)
    with pytest.raises(DecodeError):
        line_head(b'{"event_id": broken')
