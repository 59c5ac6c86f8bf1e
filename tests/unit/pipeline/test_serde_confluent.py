"""Confluent wire format (magic 0 + schema id) through a fake registry: no registry runs here."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from pipeline import model
from pipeline.errors import TransientError, UnknownSchemaError
from pipeline.schemas import SerdeSettings
from pipeline.serde import AvroSerde, serde_from_settings

SESSION = "0b7d5b4e-8a43-4a55-9d1c-6c1e7f3a2b10"


class FakeRegistry:
    """Ids by canonical schema text, like a registry; records the subjects used."""

    def __init__(self, first_id: int = 100) -> None:
        self.schemas: dict[int, Schema] = {}
        self.subjects: list[str] = []
        self.down = False
        self._next = first_id

    def register_schema(self, subject_name: str, schema: Schema) -> int:
        if self.down:
            raise SchemaRegistryError(503, 50301, "unavailable")
        self.subjects.append(subject_name)
        for schema_id, known in self.schemas.items():
            if known.schema_str == schema.schema_str:
                return schema_id
        self._next += 1
        self.schemas[self._next] = schema
        return self._next

    def get_schema(self, schema_id: int) -> Schema:
        if self.down:
            raise SchemaRegistryError(503, 50301, "unavailable")
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        return self.schemas[schema_id]


def event() -> dict[str, Any]:
    return model.new_event("llm.request", SESSION, {"model": "claude", "input_tokens": 10})


def test_registry_mode_frames_with_schema_id_and_round_trips() -> None:
    registry = FakeRegistry()
    serde = AvroSerde(registry=registry)
    ev = event()
    data = serde.encode_event(ev)
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert schema_id in registry.schemas
    assert registry.subjects == [model.TELEMETRY_EVENT]
    assert serde.decode(data) == (model.TELEMETRY_EVENT, ev)
    # A second process with an empty cache resolves the id through the registry.
    other = AvroSerde(registry=registry)
    name, decoded = other.decode(data)
    assert name == model.TELEMETRY_EVENT
    assert decoded == ev
    assert other.encode_event(decoded) == data


def test_registry_serde_still_reads_single_object_messages() -> None:
    ev = event()
    soe = AvroSerde().encode_event(ev)
    assert AvroSerde(registry=FakeRegistry()).decode_event(soe) == ev


def test_unknown_schema_id_is_unknown_schema() -> None:
    serde = AvroSerde(registry=FakeRegistry())
    with pytest.raises(UnknownSchemaError):
        serde.decode(b"\x00\x00\x00\x03\xe7\x02")


def test_registry_outage_is_retriable() -> None:
    registry = FakeRegistry()
    data = AvroSerde(registry=registry).encode_event(event())
    registry.down = True
    with pytest.raises(TransientError) as info:
        AvroSerde(registry=registry).decode(data)
    assert info.value.retriable
    with pytest.raises(TransientError):
        AvroSerde(registry=registry).encode_event(event())


def test_serde_from_settings_picks_the_wire_format() -> None:
    plain = serde_from_settings(SerdeSettings())
    assert plain.encode_event(event())[:2] == b"\xc3\x01"
    with_registry = serde_from_settings(
        SerdeSettings(schema_registry_url="http://127.0.0.1:1", schema_registry_username="u")
    )
    assert isinstance(with_registry.registry, SchemaRegistryClient)
