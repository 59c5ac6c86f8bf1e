"""Renders docs/events.md, the event catalogue, from the schemas so it cannot drift from them.

Regenerate: ``.venv/bin/python -m pipeline.events_doc > docs/events.md`` (a unit test fails when
the committed file differs from what this renders).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipeline import model
from pipeline.schemas import NAMESPACE, SchemaCatalog, load_catalog

_INTRO = """\
# Event catalogue

Generated from `avro/*.avsc` by `python -m pipeline.events_doc`; do not edit by hand (a unit
test compares this file with the schemas).

## The contract in short

- Every producer writes a `TelemetryEvent` to `agent.telemetry.ingest`, keyed by `session_id`.
  Its `payload` is a union with one record per event family; unknown event types travel as
  `OtherEvent` (name + JSON), never dropped.
- Wire format: Avro single-object encoding, `C3 01` + 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema + Avro binary body. When `AGENTWATCH_SERDE__SCHEMA_REGISTRY_URL`
  is set, the Confluent format (`00` + 4-byte schema id) is written instead (subject = full
  record name); the decoder reads both.
- In memory (`pipeline.serde`, `pipeline.model`) an event is a plain dict: `timestamp` and every
  `timestamp-micros` field are `int` microseconds since the epoch, UUIDs are `str`, and
  `payload` is a tuple `(full record name, dict)`, e.g.
  `("dev.agentwatch.FileEvent", {"path": "src/app.py", ...})`, so the family is explicit and
  `encode(decode(message)) == message`. `trace_context` is a dict or `None`.
- Decoding always returns the *current* schema's shape: fields added since the writer's version
  take their defaults. Old schema versions stay under `avro/previous/` so old messages stay
  readable.
- Evolution rules: add fields only with a default (`["null", T]` with default `null` for
  optional ones), never remove or rename a field without a default, add enum symbols only at the
  end (enums have a default for readers that do not know a symbol). A new payload family is a
  breaking change for old readers (Avro unions have no default): ship consumers first, and
  until then send the new type as `OtherEvent`. Copy the old `.avsc` to `avro/previous/` and
  bump `SCHEMA_VERSION` in `pipeline/model.py` with every change.
- `pipeline.validation.validate_event` adds the rules Avro types cannot say (below).
"""

_RULES = """\
## Validation rules (`pipeline.validation`)

Each failure raises `EventRuleError` (a `ValidationError`) with a `rule` and the dotted `field`;
its `kind` is `schema_violation` for shape problems, `rule_violation` otherwise.

| rule | when |
|---|---|
| `missing_field` | a required envelope field or key payload field (`path`, `binary`...) is absent |
| `wrong_type` / `empty_field` | such a field has the wrong type or is an empty string |
| `bad_event_id` | `event_id` is not a UUID |
| `bad_event_type` | `event_type` is not lowercase dotted `category.subcategory.action` |
| `unknown_severity` / `unknown_source` / `unknown_payload` | not a symbol of the schema |
| `payload_mismatch` | the payload record is not the family of the event type |
| `negative_value` | a count, size, duration, token count or cost below 0 (e.g. `lines_added`) |
| `out_of_range` | a percentage outside 0..100, or a NaN/infinite number |
| `bad_sha256` | `checksum_sha256` is not 64 lowercase hex characters |
| `bad_trace_context` | trace id not 32 / span id not 16 lowercase hex, or all zeros |
| `bad_json` | `OtherEvent.json` is not a JSON document |
| `timestamp_too_old` | before 2020-01-01 (a seconds or milliseconds value) |
| `timestamp_in_future` | more than one hour ahead of the validator's clock (e.g. nanoseconds) |

When `severity` is absent or null it is inferred from the event type: `*.failed` / `*.error` /
`*.crashed` -> error, `*.stalled` / `*.timeout` -> warning, `*.progress` and `resource.sample`
-> debug; then from the payload: a failed build -> error, a non-zero task exit code -> error, a
non-zero command exit code or a failed test -> warning; otherwise info.
"""


def _type(avro: Any) -> str:
    if isinstance(avro, str):
        return avro.rpartition(".")[2]
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        text = " \\| ".join(_type(b) for b in branches)
        return f"{text}?" if "null" in avro else text
    kind = avro["type"]
    if isinstance(kind, (dict, list)):
        return _type(kind)
    if "logicalType" in avro:
        return f"{kind} ({avro['logicalType']})"
    if kind == "enum":
        return f"enum {avro['name']}: {', '.join(avro['symbols'])}"
    if kind == "array":
        return f"array<{_type(avro['items'])}>"
    if kind == "map":
        return f"map<{_type(avro['values'])}>"
    if kind == "record":
        return str(avro["name"])
    return str(kind)


def _field_table(record: Mapping[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| field | type | default | notes |", "|---|---|---|---|"]
    for field in record["fields"]:
        if field["name"] in skip:
            continue
        default = (
            f"`{json.dumps(field['default'])}`" if "default" in field else "required"
        )
        notes = str(field.get("doc", "")).replace("|", "\\|")
        lines.append(f"| `{field['name']}` | {_type(field['type'])} | {default} | {notes} |")
    return lines


def render(catalog: SchemaCatalog | None = None) -> str:
    cat = catalog or load_catalog()
    out = [_INTRO]
    envelope = cat.record(model.TELEMETRY_EVENT).schema
    out += ["## TelemetryEvent (envelope)", "", str(envelope.get("doc", "")), ""]
    out += _field_table(envelope, skip=("payload",))
    out += ["", "`payload`: one of the families below.", "",
            "`TraceContext`: " + ", ".join(
                f"`{f['name']}` ({_type(f['type'])})"
                for f in cat.record(f"{NAMESPACE}.TraceContext").schema["fields"]
            ) + ".", ""]
    out += ["## Payload families", ""]
    for name in model.payload_record_names():
        record = cat.record(name).schema
        types = [t for t, family in model.EVENT_TYPES.items() if family == name]
        listed = ", ".join(f"`{t}`" for t in types) if types else "any other event type"
        out += [f"### {model.short_name(name)}", "", f"Event types: {listed}.", ""]
        doc = str(record.get("doc", ""))
        if doc and not types:
            out += [doc, ""]
        out += [*_field_table(record), ""]
    out += ["## Records of the other topics", ""]
    for name, topic in (
        (model.WIDGET_UPDATE, "agent.telemetry.widgets"),
        (model.PATTERN_ALERT, "agent.telemetry.patterns"),
        (model.DEAD_LETTER, "agent.telemetry.dlq"),
    ):
        record = cat.record(name).schema
        out += [f"### {model.short_name(name)} (`{topic}`)", "", str(record.get("doc", "")), ""]
        out += [*_field_table(record), ""]
    out += [_RULES]
    out += ["## Schema versions", "",
            "| record | file | fingerprint (CRC-64-AVRO, hex LE) | current |", "|---|---|---|---|"]
    for entry in cat.entries():
        rel = f"{entry.path.parent.name}/{entry.path.name}"
        out.append(
            f"| {model.short_name(entry.name)} | `{rel}` | `{entry.fingerprint.hex()}` | "
            f"{'yes' if entry.current else 'no'} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
