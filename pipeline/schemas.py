"""The schema catalog: every ``.avsc`` under ``avro/``, parsed once, keyed by name and fingerprint.

Files directly in ``avro/`` are the *current* schemas (the reader schemas every stage decodes
into); files under ``avro/previous/`` are older versions kept only so that messages written with
them stay readable. Each message names its writer schema by the 8-byte CRC-64-AVRO fingerprint of
the schema's Parsing Canonical Form (Avro single-object encoding).

At runtime the schemas are parsed with their ``logicalType`` annotations removed: timestamps stay
``int`` microseconds and UUIDs stay ``str`` in memory, which is what the stream processor, the
ClickHouse sink and JSON consumers want, and it skips fastavro's datetime conversion on both
paths. Parsing Canonical Form drops logical types anyway, so fingerprints are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form
from pydantic import BaseModel, ConfigDict, SecretStr

from pipeline.errors import ConfigError, UnknownSchemaError

# Not imported from pipeline.settings: settings.py imports SerdeSettings from here.
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "avro"
PREVIOUS_DIR_NAME = "previous"
NAMESPACE = "dev.agentwatch"

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
FINGERPRINT_SIZE = 8
HEADER_SIZE = len(SINGLE_OBJECT_MAGIC) + FINGERPRINT_SIZE


class SerdeSettings(BaseModel):
    """How messages are framed on Kafka; ``Settings.serde``, env ``AGENTWATCH_SERDE__*``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_registry_url: str | None = None
    """Set to use the Confluent wire format (magic 0 + schema id) instead of single-object."""
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    schema_dir: Path = SCHEMA_DIR


def full_name(name: str) -> str:
    """``TelemetryEvent`` -> ``dev.agentwatch.TelemetryEvent``; full names pass through."""
    return name if "." in name else f"{NAMESPACE}.{name}"


def strip_logical_types(schema: Any) -> Any:
    """A copy of a schema JSON without ``logicalType`` keys (see the module docstring)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(v) for v in schema]
    return schema


def schema_fingerprint(schema_json: Any) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, little-endian, as single-object encoding wants."""
    canonical = to_parsing_canonical_form(parse_schema(schema_json, _write_hint=False))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True)
class SchemaEntry:
    """One schema file, ready for fastavro."""

    name: str
    """Full name of the top-level record, e.g. ``dev.agentwatch.TelemetryEvent``."""
    path: Path
    current: bool
    raw: Mapping[str, Any] = field(repr=False)
    """The schema as written in the file, logical types included (docs, ClickHouse DDL)."""
    parsed: Any = field(repr=False)
    """fastavro-parsed runtime schema (logical types stripped)."""
    canonical: str = field(repr=False)
    fingerprint: bytes = field(repr=False)

    @property
    def fingerprint_int(self) -> int:
        return int.from_bytes(self.fingerprint, "little", signed=True)

    @property
    def header(self) -> bytes:
        """The single-object encoding prefix every message written with this schema starts with."""
        return SINGLE_OBJECT_MAGIC + self.fingerprint


def load_entry(path: Path, *, current: bool) -> SchemaEntry:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        runtime = strip_logical_types(raw)
        parsed = parse_schema(runtime)
        canonical = to_parsing_canonical_form(parse_schema(runtime, _write_hint=False))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # fastavro reports bad schemas as SchemaParseException (a ValueError subclass) or KeyError.
        raise ConfigError(f"cannot load Avro schema {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ConfigError(f"Avro schema {path} must be a top-level record")
    return SchemaEntry(
        name=full_name(str(raw["name"]) if "namespace" not in raw
                       else f"{raw['namespace']}.{raw['name']}"),
        path=path,
        current=current,
        raw=raw,
        parsed=parsed,
        canonical=canonical,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


@dataclass(frozen=True)
class RecordInfo:
    """One named record found anywhere inside the current schemas (top-level or nested)."""

    name: str
    schema: Mapping[str, Any] = field(repr=False)
    defaults: Mapping[str, Any] = field(repr=False)
    required: tuple[str, ...]


def _index_records(schema: Any, namespace: str, into: dict[str, RecordInfo]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _index_records(branch, namespace, into)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            ns = schema.get("namespace", namespace)
            name = f"{ns}.{schema['name']}" if ns else str(schema["name"])
            into[name] = RecordInfo(
                name=name,
                schema=schema,
                defaults={f["name"]: f["default"] for f in schema["fields"] if "default" in f},
                required=tuple(f["name"] for f in schema["fields"] if "default" not in f),
            )
            for f in schema["fields"]:
                _index_records(f["type"], ns, into)
        elif kind == "array":
            _index_records(schema["items"], namespace, into)
        elif kind == "map":
            _index_records(schema["values"], namespace, into)
        elif isinstance(kind, (dict, list)):
            _index_records(kind, namespace, into)


class SchemaCatalog:
    """Current schemas by name and every known schema by fingerprint; immutable once built."""

    def __init__(self, entries: Iterable[SchemaEntry]) -> None:
        by_name: dict[str, SchemaEntry] = {}
        by_fp: dict[bytes, SchemaEntry] = {}
        for entry in entries:
            if entry.current:
                if entry.name in by_name:
                    raise ConfigError(
                        f"two current schemas named {entry.name}: "
                        f"{by_name[entry.name].path} and {entry.path}"
                    )
                by_name[entry.name] = entry
            # Identical canonical forms are the same schema; keep the current file's entry.
            if entry.fingerprint not in by_fp or entry.current:
                by_fp[entry.fingerprint] = entry
        self._by_name = by_name
        self._by_fp = by_fp
        records: dict[str, RecordInfo] = {}
        for entry in by_name.values():
            _index_records(entry.raw, "", records)
        self._records = records

    @classmethod
    def from_directory(cls, directory: Path = SCHEMA_DIR) -> SchemaCatalog:
        if not directory.is_dir():
            raise ConfigError(f"Avro schema directory {directory} does not exist")
        entries = [load_entry(p, current=True) for p in sorted(directory.glob("*.avsc"))]
        previous = directory / PREVIOUS_DIR_NAME
        if previous.is_dir():
            entries += [load_entry(p, current=False) for p in sorted(previous.glob("*.avsc"))]
        return cls(entries)

    def current(self, name: str) -> SchemaEntry:
        """The reader schema of a record name (short or full)."""
        try:
            return self._by_name[full_name(name)]
        except KeyError:
            raise UnknownSchemaError(f"no current Avro schema named {name!r}") from None

    def by_fingerprint(self, fp: bytes) -> SchemaEntry:
        try:
            return self._by_fp[fp]
        except KeyError:
            raise UnknownSchemaError(
                f"no Avro schema with fingerprint {fp.hex()} under avro/"
            ) from None

    def record(self, name: str) -> RecordInfo:
        """Any named record of the current schemas, nested ones included (e.g. FileEvent)."""
        try:
            return self._records[full_name(name)]
        except KeyError:
            raise UnknownSchemaError(f"no record named {name!r} in the current schemas") from None

    def record_names(self) -> list[str]:
        return sorted(self._records)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def entries(self) -> list[SchemaEntry]:
        """Every known schema, current ones first."""
        return sorted(self._by_fp.values(), key=lambda e: (not e.current, e.name, str(e.path)))


@lru_cache(maxsize=4)
def load_catalog(directory: Path = SCHEMA_DIR) -> SchemaCatalog:
    """The catalog of a directory, parsed once per process (schemas never change at runtime)."""
    return SchemaCatalog.from_directory(directory)
