"""Bound the size of free-text fields so one 10 MB tool output costs a marker, not an event.

Two passes around redaction, so no cut can leave half a secret that no rule recognises:

1. ``precut_event`` (before redaction) cuts long payload strings to the bound plus
   ``CUT_MARGIN`` characters, so redacting a 10 MB output costs what redacting 70 KB does, and
   remembers each long string's original size;
2. ``truncate_event`` (after redaction) first drops the margin of precut strings, where a secret
   cut by pass 1 would sit (the redactor saw it only partly), then cuts to the bound and appends
   a marker naming the original size.

Only payload strings, list items and metadata values are cut; envelope fields are identifiers,
and an oversized identifier is a broken event, not a long one. Metadata values are not precut:
the redactor may rename a map key, which would lose track of the margin to drop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TRUNCATED_METADATA_KEY = "agentwatch.truncated"
"""Metadata key listing the JSON pointers of the fields this stage cut (comma-separated)."""

CUT_MARGIN = 4096
"""Characters kept beyond the bound before redaction and dropped after it: longer than any
secret the rules match whole (a PEM private key block included)."""

JSON_FIELDS = frozenset({("dev.agentwatch.OtherEvent", "json")})
"""(payload record, field) pairs that must stay a JSON document after cutting."""


@dataclass
class Precut:
    """What ``precut_event`` learnt, for ``truncate_event``."""

    sizes: dict[str, int] = field(default_factory=dict)
    """JSON pointer -> original UTF-8 size, for every string longer than the bound."""
    cut: set[str] = field(default_factory=set)
    """Pointers of the strings cut before redaction (their margin must be dropped)."""


# (path, string, payload family or None for metadata, field name) -> replacement or None
_Visit = Callable[[str, str, str | None, str], str | None]


def marker(total_bytes: int) -> str:
    """Appended to a cut string; says how large the original was."""
    return f"…[truncated by agentwatch: {total_bytes} bytes in total]"


def utf8_size(text: str, bound: int) -> int | None:
    """The UTF-8 size of ``text`` when it exceeds ``bound``, else ``None`` (cheaply)."""
    # A character is at most 4 UTF-8 bytes: most strings are decided without encoding.
    if len(text) * 4 <= bound:
        return None
    size = len(text.encode("utf-8", "surrogatepass"))
    return size if size > bound else None


def cut_utf8(text: str, max_bytes: int, total_bytes: int) -> str:
    """``text`` cut to ``max_bytes`` on a character boundary, with the marker."""
    kept = text.encode("utf-8", "surrogatepass")[:max_bytes].decode("utf-8", "ignore")
    return kept + marker(total_bytes)


def precut_event(event: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], Precut]:
    """Pass 1: long payload strings cut to ``max_bytes`` + margin characters (input not mutated)."""
    info = Precut()
    keep = max_bytes + CUT_MARGIN

    def visit(path: str, text: str, family: str | None, name: str) -> str | None:
        size = utf8_size(text, max_bytes)
        if size is None:
            return None
        info.sizes[path] = size
        if family is None or len(text) <= keep:
            return None
        info.cut.add(path)
        return text[:keep]

    return _map_strings(event, visit, max_bytes // 4 + 1), info


def truncate_event(
    event: dict[str, Any], max_bytes: int, precut: Precut | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Pass 2: strings over ``max_bytes`` cut and marked; returns the event and the cut pointers.

    The input is not mutated; when nothing is cut it is returned as is.
    """
    info = precut or Precut()
    paths: list[str] = []

    def visit(path: str, text: str, family: str | None, name: str) -> str | None:
        if path in info.cut:
            text = text[: max(len(text) - CUT_MARGIN, 0)]
            total = info.sizes[path]
        else:
            size = utf8_size(text, max_bytes)
            if size is None:
                return None
            total = info.sizes.get(path, size)
        paths.append(path)
        if (family, name) in JSON_FIELDS:
            return _json_stub(text, max_bytes, total)
        return cut_utf8(text, max_bytes, total)

    out = _map_strings(event, visit, 0 if info.cut else max_bytes // 4 + 1)
    if not paths:
        return event, paths
    meta = dict(out.get("metadata") or {})
    meta[TRUNCATED_METADATA_KEY] = ",".join(paths)
    out["metadata"] = meta
    return out, paths


def _json_stub(text: str, max_bytes: int, total: int) -> str:
    # Half the bound for the excerpt: JSON escaping can grow it again.
    body = {
        "agentwatch_truncated": True,
        "original_bytes": total,
        "excerpt": cut_utf8(text, max_bytes // 2, total),
    }
    return json.dumps(body, ensure_ascii=False)


def _longest(event: dict[str, Any]) -> int:
    """Length of the longest payload or metadata string (one level of lists and maps)."""
    longest = 0
    payload = event.get("payload")
    values: list[Any] = []
    if isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[1], dict):
        values.extend(payload[1].values())
    metadata = event.get("metadata")
    if isinstance(metadata, dict):
        values.extend(metadata.values())
    for value in values:
        kind = type(value)
        if kind is str:
            longest = max(longest, len(value))
        elif kind is list or kind is dict:
            for item in value.values() if kind is dict else value:
                if type(item) is str:
                    longest = max(longest, len(item))
    return longest


def _map_strings(event: dict[str, Any], visit: _Visit, min_chars: int = 0) -> dict[str, Any]:
    """A copy of ``event`` with payload and metadata strings replaced where ``visit`` says.

    ``min_chars``: strings shorter than this are never changed, so an event without one that
    long is returned untouched without building a single path (the common case).
    """
    if min_chars and _longest(event) < min_chars:
        return event
    out: dict[str, Any] | None = None
    payload = event.get("payload")
    if isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[1], dict):
        family, body = payload
        new_body = _map_record(family, body, visit)
        if new_body is not body:
            out = dict(event)
            out["payload"] = (family, new_body)
    metadata = event.get("metadata")
    if isinstance(metadata, dict):
        new_meta = _map_dict(metadata, "/metadata", None, visit)
        if new_meta is not metadata:
            out = out or dict(event)
            out["metadata"] = new_meta
    return event if out is None else out


def _map_record(family: str, body: dict[str, Any], visit: _Visit) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for name, value in body.items():
        path = f"/payload/{_escape(name)}"
        new: Any = value
        if type(value) is str:
            replaced = visit(path, value, family, name)
            new = value if replaced is None else replaced
        elif type(value) is list:
            new = _map_list(value, path, family, name, visit)
        elif type(value) is dict:
            new = _map_dict(value, path, family, visit)
        if new is not value:
            out = out if out is not None else dict(body)
            out[name] = new
    return body if out is None else out


def _map_list(
    items: list[Any], path: str, family: str, name: str, visit: _Visit
) -> list[Any]:
    out: list[Any] | None = None
    for i, item in enumerate(items):
        if type(item) is not str:
            continue
        replaced = visit(f"{path}/{i}", item, family, name)
        if replaced is not None:
            out = out if out is not None else list(items)
            out[i] = replaced
    return items if out is None else out


def _map_dict(
    mapping: dict[str, Any], path: str, family: str | None, visit: _Visit
) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for key, value in mapping.items():
        if type(value) is not str:
            continue
        replaced = visit(f"{path}/{_escape(key)}", value, family, key)
        if replaced is not None:
            out = out if out is not None else dict(mapping)
            out[key] = replaced
    return mapping if out is None else out


def _escape(segment: str) -> str:
    """RFC 6901, the same pointers the redactor writes into redacted_fields."""
    return segment.replace("~", "~0").replace("/", "~1")
