"""The typed model and the event families cannot drift from avro/*.avsc."""

from __future__ import annotations

from typing import Any, get_type_hints

import pytest

from pipeline import model
from pipeline.errors import ErrorKind, ValidationError
from pipeline.schemas import load_catalog

_PRIMITIVES: dict[str, Any] = {
    "string": str, "int": int, "long": int, "double": float, "float": float,
    "boolean": bool, "bytes": bytes,
}


def python_type(avro: Any) -> Any:
    """The annotation the model must use for an Avro type (logical types stay primitive)."""
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        return model.TYPED_RECORDS[avro if "." in avro else f"dev.agentwatch.{avro}"]
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) > 1:
            assert all(isinstance(b, dict) and b["type"] == "record" for b in branches)
            return model.Payload
        inner = python_type(branches[0])
        return inner | None if "null" in avro else inner
    kind = avro["type"]
    if kind == "enum":
        return str
    if kind == "array":
        return list[python_type(avro["items"])]  # type: ignore[misc]
    if kind == "map":
        return dict[str, python_type(avro["values"])]  # type: ignore[misc]
    if kind == "record":
        return model.TYPED_RECORDS[f"dev.agentwatch.{avro['name']}"]
    return python_type(kind)


def test_every_record_of_the_schemas_has_a_typed_dict() -> None:
    assert set(load_catalog().record_names()) == set(model.TYPED_RECORDS)


@pytest.mark.parametrize("name", sorted(model.TYPED_RECORDS))
def test_typed_dict_matches_schema(name: str) -> None:
    info = load_catalog().record(name)
    typed = model.TYPED_RECORDS[name]
    hints = get_type_hints(typed)
    fields = info.schema["fields"]
    assert list(hints) == [f["name"] for f in fields]
    assert set(typed.__required_keys__) == set(info.required)  # type: ignore[attr-defined]
    for field in fields:
        assert hints[field["name"]] == python_type(field["type"]), field["name"]


def test_payload_names_follow_the_union_order() -> None:
    envelope = load_catalog().record(model.TELEMETRY_EVENT).schema
    union = next(f["type"] for f in envelope["fields"] if f["name"] == "payload")
    assert tuple(f"dev.agentwatch.{r['name']}" for r in union) == model.payload_record_names()


def test_every_family_but_other_has_event_types() -> None:
    families = set(model.EVENT_TYPES.values())
    assert families == set(model.PAYLOAD_RECORD_NAMES) - {model.OTHER_EVENT}
    for event_type, family in model.EVENT_TYPES.items():
        assert model.payload_name_for(event_type) == family


def test_enums_match_schema_symbols() -> None:
    envelope = load_catalog().record(model.TELEMETRY_EVENT).schema
    types = {f["name"]: f["type"] for f in envelope["fields"]}
    assert [s.value for s in model.Severity] == types["severity"]["symbols"]
    assert [s.value for s in model.Source] == types["source"]["symbols"]


def test_new_event_fills_envelope_and_payload_defaults() -> None:
    ev = model.new_event("llm.request", "s-1", {"model": "claude", "input_tokens": 5})
    assert ev["schema_version"] == model.SCHEMA_VERSION
    assert ev["severity"] == "info"
    assert ev["source"] == "sdk"
    assert isinstance(ev["timestamp"], int)
    name, body = ev["payload"]
    assert name == model.LLM_REQUEST
    assert body["input_tokens"] == 5
    assert body["output_tokens"] == 0
    assert body["cost_usd"] is None
    other = model.new_event("llm.request", "s-1", {"model": "claude"})
    assert other["event_id"] != ev["event_id"]


def test_new_event_copies_container_defaults() -> None:
    first = model.new_event("command.executed", "s", {"binary": "ls"})
    first["payload"][1]["args"].append("-l")
    second = model.new_event("command.executed", "s", {"binary": "ls"})
    assert second["payload"][1]["args"] == []
    assert model.record_defaults(model.COMMAND_EVENT)["args"] == []


def test_new_event_rejects_missing_required_payload_field() -> None:
    with pytest.raises(ValidationError) as info:
        model.new_event("file.write", "s", {"lines_added": 1})
    assert info.value.kind is ErrorKind.SCHEMA_VIOLATION
    assert model.required_fields(model.FILE_EVENT) == ("path",)
