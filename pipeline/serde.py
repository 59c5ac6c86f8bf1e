"""Avro encode/decode of every record on agentwatch's topics.

Wire formats (the decoder accepts both, whatever the encoder is set to):

* Avro single-object encoding (default): ``C3 01`` + 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema + Avro binary body. Writer schemas are found in the
  catalog built from ``avro/`` (old versions live in ``avro/previous/``).
* Confluent (when ``SerdeSettings.schema_registry_url`` is set): ``00`` + 4-byte big-endian
  schema id + body; ids come from a Confluent-compatible registry through confluent-kafka's
  ``SchemaRegistryClient``, subjects follow the record-name strategy (subject = full record name,
  so one subject per record type whatever the topic).

In memory a record is the plain dict fastavro reads and writes. Logical types are not applied
(timestamps are ``int`` microseconds, UUIDs ``str``). A union of several records (the event
``payload``) is a ``(full record name, dict)`` tuple, e.g.
``("dev.agentwatch.FileEvent", {"path": ...})``, so the family is explicit and
``encode(decode(b)) == b``; an optional single record (``trace_context``) is the dict or ``None``.
Decoded records are resolved to the *current* schema of their name, so every field of the
current schema is present whatever version wrote the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipeline.errors import (
    BadMagicError,
    DecodeError,
    EncodeError,
    TransientError,
    TruncatedMessageError,
    UnknownSchemaError,
)
from pipeline.schemas import (
    HEADER_SIZE,
    SINGLE_OBJECT_MAGIC,
    SchemaCatalog,
    SerdeSettings,
    full_name,
    load_catalog,
    strip_logical_types,
)

if TYPE_CHECKING:
    from pipeline.settings import Settings

__all__ = [
    "CONFLUENT_HEADER_SIZE",
    "CONFLUENT_MAGIC",
    "AvroSerde",
    "RegistryClient",
    "SerdeSettings",
    "serde_from_settings",
]

TELEMETRY_EVENT = "dev.agentwatch.TelemetryEvent"
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_SIZE = 5
_SOE_MAGIC0 = SINGLE_OBJECT_MAGIC[0]


class RegistryClient(Protocol):
    """The two calls of confluent-kafka's ``SchemaRegistryClient`` the serde uses."""

    def register_schema(self, subject_name: str, schema: Any) -> int: ...

    def get_schema(self, schema_id: int) -> Any: ...


@dataclass(frozen=True)
class _Writer:
    header: bytes
    parsed: Any


@dataclass(frozen=True)
class _Reader:
    name: str
    writer: Any
    reader: Any
    """``None`` when writer and reader schema are the same: fastavro then skips resolution."""


class AvroSerde:
    """Encode and decode records against the schema catalog; safe to share between threads."""

    def __init__(
        self,
        catalog: SchemaCatalog | None = None,
        *,
        registry: RegistryClient | None = None,
    ) -> None:
        self._catalog = catalog if catalog is not None else load_catalog()
        self._registry = registry
        self._writers: dict[str, _Writer] = {}
        self._readers: dict[bytes, _Reader] = {}
        self._registry_readers: dict[int, _Reader] = {}
        for entry in self._catalog.entries():
            current = self._catalog.current(entry.name)
            self._readers[entry.fingerprint] = _Reader(
                name=entry.name,
                writer=entry.parsed,
                reader=None if current.fingerprint == entry.fingerprint else current.parsed,
            )
        # In registry mode writers are filled lazily: each needs a registered schema id.
        for name in self._catalog.names() if registry is None else ():
            entry = self._catalog.current(name)
            writer = _Writer(header=entry.header, parsed=entry.parsed)
            self._writers[name] = writer
            self._writers[name.rsplit(".", 1)[-1]] = writer

    @property
    def catalog(self) -> SchemaCatalog:
        return self._catalog

    @property
    def registry(self) -> RegistryClient | None:
        return self._registry

    # -- encode ---------------------------------------------------------------------------

    def encode(self, schema_name: str, record: Mapping[str, Any]) -> bytes:
        """Frame and serialize ``record`` with the current schema named ``schema_name``."""
        writer = self._writers.get(schema_name) or self._writer(schema_name)
        out = BytesIO()
        out.write(writer.header)
        try:
            # strict: a misspelt field name fails here instead of silently vanishing.
            schemaless_writer(out, writer.parsed, record, strict_allow_default=True)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"record does not fit schema {schema_name}: {exc}") from exc
        return out.getvalue()

    def encode_event(self, event: Mapping[str, Any]) -> bytes:
        # A bare dict payload would make fastavro guess the family from field names; the
        # contract wants the (record name, dict) tuple so the family is never a guess.
        if type(event.get("payload")) is not tuple:
            raise EncodeError("payload must be a (record name, dict) tuple")
        return self.encode(TELEMETRY_EVENT, event)

    def _writer(self, schema_name: str) -> _Writer:
        entry = self._catalog.current(schema_name)
        if self._registry is None:
            header = entry.header
        else:
            schema_id = self._register(entry.name, entry.raw)
            header = bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
        writer = _Writer(header=header, parsed=entry.parsed)
        self._writers[schema_name] = writer
        return writer

    # -- decode ---------------------------------------------------------------------------

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Return (full record name of the writer schema, record in its current schema)."""
        if not data:
            raise TruncatedMessageError("empty message")
        first = data[0]
        if first == _SOE_MAGIC0:
            if len(data) < HEADER_SIZE:
                raise TruncatedMessageError(f"message of {len(data)} bytes has no complete header")
            if data[1] != SINGLE_OBJECT_MAGIC[1]:
                raise BadMagicError(f"bad magic {data[:2].hex()}, expected c301")
            fp = bytes(data[2:HEADER_SIZE])
            reader = self._readers.get(fp)
            if reader is None:
                raise UnknownSchemaError(f"no Avro schema with fingerprint {fp.hex()} under avro/")
            offset = HEADER_SIZE
        elif first == CONFLUENT_MAGIC:
            if len(data) < CONFLUENT_HEADER_SIZE:
                raise TruncatedMessageError(f"message of {len(data)} bytes has no complete header")
            reader = self._registry_reader(int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big"))
            offset = CONFLUENT_HEADER_SIZE
        else:
            raise BadMagicError(f"bad magic byte {first:#04x}, expected c301 or 00")
        record = _read_body(data, offset, reader)
        return reader.name, record

    def decode_event(self, data: bytes) -> dict[str, Any]:
        name, record = self.decode(data)
        if name != TELEMETRY_EVENT:
            raise UnknownSchemaError(f"expected a TelemetryEvent, got a {name}")
        return record

    # -- Confluent schema registry --------------------------------------------------------

    def _register(self, name: str, raw: Mapping[str, Any]) -> int:
        from confluent_kafka.schema_registry import Schema

        registry = self._require_registry()
        try:
            return int(registry.register_schema(name, Schema(json.dumps(raw), "AVRO")))
        except Exception as exc:  # registry client raises transport and HTTP errors alike
            raise TransientError(f"cannot register schema {name} in the registry: {exc}") from exc

    def _registry_reader(self, schema_id: int) -> _Reader:
        cached = self._registry_readers.get(schema_id)
        if cached is not None:
            return cached
        registry = self._registry
        if registry is None:
            raise UnknownSchemaError(
                f"Confluent-framed message (schema id {schema_id}) but no schema registry is set"
            )
        reader = self._fetch_registry_reader(registry, schema_id)
        self._registry_readers[schema_id] = reader
        return reader

    def _fetch_registry_reader(self, registry: RegistryClient, schema_id: int) -> _Reader:
        try:
            schema = registry.get_schema(schema_id)
        except Exception as exc:
            if _is_not_found(exc):
                raise UnknownSchemaError(f"schema id {schema_id} is not in the registry") from exc
            raise TransientError(f"cannot fetch schema id {schema_id}: {exc}") from exc
        try:
            raw = json.loads(schema.schema_str)
            writer = parse_schema(strip_logical_types(raw))
            name = full_name(
                f"{raw['namespace']}.{raw['name']}" if "namespace" in raw else str(raw["name"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UnknownSchemaError(f"schema id {schema_id} is not a usable Avro record") from exc
        current = self._catalog.current(name)
        return _Reader(name=name, writer=writer, reader=current.parsed)

    def _require_registry(self) -> RegistryClient:
        if self._registry is None:
            raise UnknownSchemaError("no schema registry is configured")
        return self._registry


def _is_not_found(exc: Exception) -> bool:
    # SchemaRegistryError carries the HTTP status; 404 means the id does not exist.
    return getattr(exc, "http_status_code", None) == 404


def _read_body(data: bytes, offset: int, reader: _Reader) -> dict[str, Any]:
    buf = BytesIO(data)
    buf.seek(offset)
    try:
        record = schemaless_reader(
            buf,
            reader.writer,
            reader.reader,
            return_record_name=True,
            return_record_name_override=True,
        )
    except (EOFError, IndexError) as exc:
        # fastavro signals running out of input with either; the same types also flag bad union
        # indexes mid-message, so only a failure at the very end counts as truncation.
        if buf.tell() >= len(data):
            raise TruncatedMessageError(f"message ends inside the {reader.name} body") from exc
        raise DecodeError(f"cannot decode {reader.name} body: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # fastavro raises many types on garbage; none may reach the caller
        raise DecodeError(f"cannot decode {reader.name} body: {type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(data):
        raise DecodeError(
            f"{len(data) - buf.tell()} trailing bytes after the {reader.name} body"
        )
    if not isinstance(record, dict):
        raise DecodeError(f"{reader.name} body is not a record")
    return record


def serde_from_settings(settings: Settings | SerdeSettings) -> AvroSerde:
    """The serde a component should use; registry mode when a registry URL is configured."""
    serde_settings = (
        settings if isinstance(settings, SerdeSettings)
        else getattr(settings, "serde", SerdeSettings())
    )
    catalog = load_catalog(serde_settings.schema_dir)
    if serde_settings.schema_registry_url is None:
        return AvroSerde(catalog)
    from confluent_kafka.schema_registry import SchemaRegistryClient

    conf: dict[str, str] = {"url": serde_settings.schema_registry_url}
    if serde_settings.schema_registry_username is not None:
        password = (
            serde_settings.schema_registry_password.get_secret_value()
            if serde_settings.schema_registry_password is not None else ""
        )
        conf["basic.auth.user.info"] = f"{serde_settings.schema_registry_username}:{password}"
    return AvroSerde(catalog, registry=SchemaRegistryClient(conf))

