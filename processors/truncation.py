"""Bound the size of free-text fields so one 10 MB tool output costs a marker, not an event.

Runs on the *redacted* event: the redactor sees every string whole (it bounds its own work
with a margin beyond its cut), so cutting afterwards can never leave half a secret that no rule
recognises any more. Only payload strings, list items and metadata values are cut; envelope
fields are identifiers, and an oversized identifier is a broken event, not a long one.
"""

from __future__ import annotations

import json
from typing import Any

TRUNCATED_METADATA_KEY = "agentwatch.truncated"
"""Metadata key listing the JSON pointers of the fields this stage cut (comma-separated)."""

JSON_FIELDS = frozenset({("dev.agentwatch.OtherEvent", "json")})
"""(payload record, field) pairs that must stay a JSON document after cutting."""


def marker(total_bytes: int) -> str:
    """Appended to a cut string; says how large the original was."""
    return f"…[truncated by agentwatch: {total_bytes} bytes in total]"


def cut_utf8(text: str, max_bytes: int) -> tuple[str, int] | None:
    """``(cut text with marker, original byte length)``, or ``None`` when ``text`` fits."""
    # A character is at most 4 UTF-8 bytes: most strings are decided without encoding.
    if len(text) * 4 <= max_bytes:
        return None
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return None
    kept = raw[:max_bytes].decode("utf-8", "ignore")
    return kept + marker(len(raw)), len(raw)


def _cut_json(text: str, max_bytes: int) -> tuple[str, int] | None:
    cut = cut_utf8(text, max_bytes)
    if cut is None:
        return None
    # Half the bound for the excerpt: JSON escaping can grow it again.
    excerpt = cut_utf8(text, max_bytes // 2)
    body = {
        "agentwatch_truncated": True,
        "original_bytes": cut[1],
        "excerpt": excerpt[0] if excerpt is not None else text,
    }
    return json.dumps(body, ensure_ascii=False), cut[1]


def truncate_event(event: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], list[str]]:
    """The event with long strings cut, and the JSON pointers of the cut fields.

    The input is not mutated; when nothing is cut it is returned as is.
    """
    paths: list[str] = []
    payload = event.get("payload")
    new_payload = payload
    if isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[1], dict):
        family, body = payload
        new_body = _truncate_body(family, body, max_bytes, paths)
        if new_body is not body:
            new_payload = (family, new_body)
    metadata = event.get("metadata")
    new_metadata = metadata
    if isinstance(metadata, dict):
        new_metadata = _truncate_map(metadata, "/metadata", max_bytes, paths)
    if not paths:
        return event, paths
    out = dict(event)
    out["payload"] = new_payload
    meta = dict(new_metadata) if isinstance(new_metadata, dict) else {}
    meta[TRUNCATED_METADATA_KEY] = ",".join(paths)
    out["metadata"] = meta
    return out, paths


def _truncate_body(
    family: str, body: dict[str, Any], max_bytes: int, paths: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for name, value in body.items():
        new: Any = value
        path = f"/payload/{name}"
        if type(value) is str:
            cut = (
                _cut_json(value, max_bytes) if (family, name) in JSON_FIELDS
                else cut_utf8(value, max_bytes)
            )
            if cut is not None:
                new = cut[0]
                paths.append(path)
        elif type(value) is list:
            new = _truncate_list(value, path, max_bytes, paths)
        elif type(value) is dict:
            new = _truncate_map(value, path, max_bytes, paths)
        if new is not value:
            if out is None:
                out = dict(body)
            out[name] = new
    return body if out is None else out


def _truncate_list(items: list[Any], path: str, max_bytes: int, paths: list[str]) -> list[Any]:
    out: list[Any] | None = None
    for i, item in enumerate(items):
        if type(item) is not str:
            continue
        cut = cut_utf8(item, max_bytes)
        if cut is None:
            continue
        if out is None:
            out = list(items)
        out[i] = cut[0]
        paths.append(f"{path}/{i}")
    return items if out is None else out


def _truncate_map(
    mapping: dict[str, Any], path: str, max_bytes: int, paths: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for key, value in mapping.items():
        if type(value) is not str:
            continue
        cut = cut_utf8(value, max_bytes)
        if cut is None:
            continue
        if out is None:
            out = dict(mapping)
        out[key] = cut[0]
        paths.append(f"{path}/{_escape(key)}")
    return mapping if out is None else out


def _escape(segment: str) -> str:
    """RFC 6901, the same pointers the redactor writes into redacted_fields."""
    return segment.replace("~", "~0").replace("/", "~1")
