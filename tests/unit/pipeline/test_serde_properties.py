"""Property tests: any record the schemas allow survives encode/decode, and random bytes only
ever raise DecodeError. Strategies are derived from avro/*.avsc, so new fields are covered."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import model
from pipeline.errors import DecodeError
from pipeline.schemas import load_catalog
from pipeline.serde import AvroSerde

SERDE = AvroSerde()
CATALOG = load_catalog()
INT32 = 2**31
INT64 = 2**63
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-INT32, INT32 - 1),
    "long": st.integers(-INT64, INT64 - 1),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=30),
    "bytes": st.binary(max_size=30),
}


def from_avro(schema: Any, namespace: str = "dev.agentwatch") -> st.SearchStrategy[Any]:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        return from_avro(CATALOG.record(schema).schema, namespace)
    if isinstance(schema, list):
        records = [b for b in schema if isinstance(b, dict) and b["type"] == "record"]
        if len(records) > 1:
            return st.one_of(*[
                st.tuples(st.just(f"{namespace}.{r['name']}"), from_avro(r, namespace))
                for r in records
            ])
        return st.one_of(*[from_avro(b, namespace) for b in schema])
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries(
            {f["name"]: from_avro(f["type"], namespace) for f in schema["fields"]}
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(from_avro(schema["items"], namespace), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=10), from_avro(schema["values"], namespace),
                               max_size=4)
    return from_avro(kind, namespace)


def records_of(name: str) -> st.SearchStrategy[Any]:
    return from_avro(CATALOG.current(name).raw)


@SETTINGS
@given(records_of(model.TELEMETRY_EVENT))
def test_any_event_round_trips(event: dict[str, Any]) -> None:
    data = SERDE.encode_event(event)
    assert SERDE.decode_event(data) == event
    assert SERDE.encode_event(SERDE.decode_event(data)) == data


@SETTINGS
@given(st.sampled_from([model.WIDGET_UPDATE, model.PATTERN_ALERT, model.DEAD_LETTER]).flatmap(
    lambda name: st.tuples(st.just(name), records_of(name))
))
def test_any_topic_record_round_trips(named: tuple[str, dict[str, Any]]) -> None:
    name, record = named
    assert SERDE.decode(SERDE.encode(name, record)) == (name, record)


@SETTINGS
@given(records_of(model.TELEMETRY_EVENT), st.data())
def test_corrupted_messages_raise_only_decode_errors(event: dict[str, Any], data: Any) -> None:
    message = bytearray(SERDE.encode_event(event))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(message) - 1))
        message[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    with contextlib.suppress(DecodeError):
        SERDE.decode(bytes(message[:cut]))


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_errors(blob: bytes) -> None:
    header = CATALOG.current(model.TELEMETRY_EVENT).header
    for candidate in (blob, header + blob):
        with contextlib.suppress(DecodeError):
            SERDE.decode(candidate)
