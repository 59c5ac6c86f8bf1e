"""A Faust codec over the project's AvroSerde: what travels between stages is Avro, never JSON.

One codec instance per record type, passed to a topic as ``value_serializer``; decoding checks
the writer schema's name so a topic carrying the wrong record fails loudly instead of handing an
agent a dict of the wrong shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.serializers.codecs import Codec

from pipeline.errors import EncodeError, UnknownSchemaError
from pipeline.model import DEAD_LETTER, PATTERN_ALERT, TELEMETRY_EVENT, WIDGET_UPDATE
from pipeline.serde import AvroSerde

__all__ = ["RECORD_CODECS", "AvroCodec", "avro_codecs"]

RECORD_CODECS: Mapping[str, str] = {
    "avro-event": TELEMETRY_EVENT,
    "avro-dead-letter": DEAD_LETTER,
    "avro-widget": WIDGET_UPDATE,
    "avro-pattern": PATTERN_ALERT,
}
"""Codec name -> the record it carries."""


class AvroCodec(Codec):
    """Encodes a record dict (or passes bytes that are already encoded) with ``schema_name``."""

    def __init__(self, serde: AvroSerde, schema_name: str, **kwargs: Any) -> None:
        super().__init__(serde=serde, schema_name=schema_name, **kwargs)
        self.serde = serde
        self.schema_name = schema_name

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            # Already encoded by the stage (it had to measure the size); check the framing.
            name, _ = self.serde.decode(obj)
            if name != self.schema_name:
                raise EncodeError(f"bytes hold a {name}, this topic carries {self.schema_name}")
            return obj
        if not isinstance(obj, Mapping):
            raise EncodeError(f"{self.schema_name} must be a dict, got {type(obj).__name__}")
        return self.serde.encode(self.schema_name, obj)

    def _loads(self, data: bytes) -> Any:
        name, record = self.serde.decode(data)
        if name != self.schema_name:
            raise UnknownSchemaError(f"expected a {self.schema_name}, got a {name}")
        return record


def avro_codecs(serde: AvroSerde) -> dict[str, AvroCodec]:
    """One codec per record type (see ``RECORD_CODECS``), sharing the serde's schema caches."""
    return {name: AvroCodec(serde, record) for name, record in RECORD_CODECS.items()}
