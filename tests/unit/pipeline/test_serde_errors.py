"""Bad bytes raise a specific, named DecodeError; nothing else escapes to the caller."""

from __future__ import annotations

import pytest

from pipeline import model
from pipeline.errors import (
    BadMagicError,
    DecodeError,
    EncodeError,
    ErrorKind,
    TruncatedMessageError,
    UnknownSchemaError,
)
from pipeline.serde import AvroSerde

SESSION = "0b7d5b4e-8a43-4a55-9d1c-6c1e7f3a2b10"


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


@pytest.fixture(scope="module")
def message(serde: AvroSerde) -> bytes:
    event = model.new_event(
        "command.executed", SESSION,
        {"binary": "pytest", "args": ["-q"], "exit_code": 1, "stdout_excerpt": "1 failed"},
        metadata={"cwd": "/repo"},
    )
    return serde.encode_event(event)


def test_wrong_magic_byte(serde: AvroSerde, message: bytes) -> None:
    with pytest.raises(BadMagicError) as info:
        serde.decode(b"\x7b" + message[1:])
    assert info.value.kind is ErrorKind.BAD_MAGIC
    with pytest.raises(BadMagicError):
        serde.decode(b"\xc3\x02" + message[2:])
    with pytest.raises(BadMagicError):
        serde.decode(b'{"event_type": "file.read"}')


def test_unknown_fingerprint(serde: AvroSerde, message: bytes) -> None:
    with pytest.raises(UnknownSchemaError) as info:
        serde.decode(message[:2] + bytes(8) + message[10:])
    assert info.value.kind is ErrorKind.UNKNOWN_SCHEMA


def test_every_truncation_is_a_truncated_message(serde: AvroSerde, message: bytes) -> None:
    for cut in range(len(message)):
        with pytest.raises(TruncatedMessageError) as info:
            serde.decode(message[:cut])
        assert info.value.kind is ErrorKind.TRUNCATED


def test_trailing_bytes_are_a_decode_error(serde: AvroSerde, message: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        serde.decode(message + b"\x00")
    assert info.value.kind is ErrorKind.DECODE_ERROR


@pytest.mark.parametrize("body", [
    # event_id, event_type, timestamp, session_id, agent, then union index 63 for task_id.
    b"\x02a\x02b\x02\x02c\x02d\x7e" + bytes(20),
    # event_id "a", then event_type starts with invalid UTF-8.
    b"\x02a\x04\xff\xfe" + bytes(20),
])
def test_garbage_body_is_a_decode_error(serde: AvroSerde, message: bytes, body: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        serde.decode(message[:10] + body)
    assert info.value.kind is ErrorKind.DECODE_ERROR


@pytest.mark.parametrize("body", [b"\xff" * 64, b"\x01" + bytes(20)])
def test_garbage_that_runs_off_the_end_is_still_a_decode_error(
    serde: AvroSerde, message: bytes, body: bytes
) -> None:
    # An endless varint or a negative length (-1) make fastavro read to the end: this is
    # reported as truncation, which is a DecodeError like any other garbage.
    with pytest.raises(DecodeError):
        serde.decode(message[:10] + body)


def test_confluent_frame_without_registry_is_unknown_schema(serde: AvroSerde) -> None:
    with pytest.raises(UnknownSchemaError):
        serde.decode(b"\x00\x00\x00\x00\x07" + b"\x02")
    with pytest.raises(TruncatedMessageError):
        serde.decode(b"\x00\x00\x00")


def test_decode_event_rejects_other_records(serde: AvroSerde) -> None:
    data = serde.encode(model.WIDGET_UPDATE, {
        "session_id": SESSION, "widget": "tokens", "timestamp": 1_760_000_000_000_000,
    })
    with pytest.raises(UnknownSchemaError):
        serde.decode_event(data)


def test_encode_errors_are_named(serde: AvroSerde) -> None:
    event = model.new_event("file.read", SESSION, {"path": "a.py"})
    with pytest.raises(EncodeError) as info:
        serde.encode_event(event | {"timestamp": "yesterday"})
    assert info.value.kind is ErrorKind.SCHEMA_VIOLATION
    with pytest.raises(EncodeError):
        serde.encode_event(event | {"payload": ("dev.agentwatch.Nope", {})})
    with pytest.raises(EncodeError):
        serde.encode_event(event | {"severity": "fatal"})
    with pytest.raises(UnknownSchemaError):
        serde.encode("NoSuchRecord", {})


def test_encode_rejects_misspelt_missing_and_unnamed_fields(serde: AvroSerde) -> None:
    event = model.new_event("file.write", SESSION, {"path": "a.py"})
    typo = event | {"payload": (model.FILE_EVENT, {"path": "a.py", "line_added": 3})}
    with pytest.raises(EncodeError):
        serde.encode_event(typo)
    with pytest.raises(EncodeError):
        serde.encode_event({k: v for k, v in event.items() if k != "agent"})
    with pytest.raises(EncodeError):
        serde.encode_event(event | {"payload": {"path": "a.py"}})
    with pytest.raises(EncodeError):
        serde.encode_event(event | {"payload": (model.FILE_EVENT, {"size_bytes": 3})})
