"""The analyst's ``field:value`` search language compiled to parameterised SQL.

search_parser.py has the grammar (AND/OR/NOT, parentheses, quoted values, ranges) and parser.
``*`` and ``?`` in an unquoted value are wildcards (quoted values are literal), ``field:*`` means
"has a value", ``[a TO *]`` is an open range. User text only ever reaches ClickHouse as a
``%(pN)s`` parameter that clickhouse-driver escapes; identifiers come from the field table below,
never from the query. The gateway's search endpoint reuses ``compile_search``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from consumers.clickhouse.search_parser import (
    And,
    Node,
    Not,
    Or,
    Range,
    Term,
    parse,
    render_tree,
)
from pipeline.errors import QueryError

__all__ = ["EVENT_FIELDS", "FieldTable", "Kind", "Range", "SearchField", "SearchQuery", "Term",
           "compile_search", "compile_where", "like_pattern", "parse", "parse_time_us",
           "render_tree"]

# --------------------------------------------------------------------------------------------
# Fields


class Kind(StrEnum):
    STRING = "string"
    NUMBER = "number"
    TIME = "time"
    """Compared as microseconds; values are ISO dates/datetimes (UTC unless an offset is given)."""
    SEVERITY = "severity"
    """A string with an order, so ``severity:>=warning`` works."""
    ARRAY = "array"
    """Array(String): ``field:x`` means the array contains x."""
    METADATA = "metadata"
    """The JSON-object string column; ``metadata.key:value`` reads one key."""


@dataclass(frozen=True)
class SearchField:
    column: str
    """A trusted SQL expression over the events table (never user text)."""
    kind: Kind
    nullable: bool = False
    text: bool = False
    """Included in free-text search (bare words)."""


SEVERITIES: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class FieldTable:
    fields: Mapping[str, SearchField]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> SearchField:
        canonical = self.aliases.get(name, name)
        found = self.fields.get(canonical)
        if found is None:
            known = ", ".join(sorted(self.fields))
            raise QueryError(f"unknown search field {name!r}; known fields: {known}, metadata.<key>")
        return found

    def text_columns(self) -> list[SearchField]:
        return [f for f in self.fields.values() if f.text]


# --------------------------------------------------------------------------------------------
# Compilation


@dataclass
class _Params:
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, value: Any) -> str:
        name = f"s{len(self.values)}"
        self.values[name] = value
        return f"%({name})s"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LIKE_SPECIAL = re.compile(r"([\\%_])")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _unescape(value: str) -> str:
    """A backslash in an unquoted value makes the next character literal (``a\\*b``)."""
    return re.sub(r"\\(.)", r"\1", value)


def _has_wildcard(value: str) -> bool:
    return re.search(r"(?<!\\)[*?]", value) is not None


def like_pattern(value: str) -> str:
    """Unquoted value with ``*``/``?`` -> LIKE pattern; ``%``, ``_`` and escaped chars literal."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(_LIKE_SPECIAL.sub(r"\\\1", value[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(_LIKE_SPECIAL.sub(r"\\\1", ch))
        i += 1
    return "".join(out)


def _number(name: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise QueryError(f"{name} is numeric; {text!r} is not a number") from None
    if math.isnan(number) or math.isinf(number):
        raise QueryError(f"{name}: {text!r} is not a finite number")
    return number


def parse_time_us(name: str, text: str) -> int:
    """ISO date or datetime -> microseconds since the epoch (naive means UTC)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"{name} takes an ISO date or datetime such as 2024-05-01 or 2024-05-01T10:00:00Z; "
            f"got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _severity_rank(name: str, text: str) -> int:
    try:
        return SEVERITIES.index(text.lower())
    except ValueError:
        raise QueryError(f"{name} is one of {', '.join(SEVERITIES)}; got {text!r}") from None


class _Compiler:
    def __init__(self, table: FieldTable) -> None:
        self.table = table
        self.params = _Params()

    def compile(self, node: Node) -> str:
        if isinstance(node, And):
            return "(" + " AND ".join(self.compile(n) for n in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.compile(n) for n in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.compile(node.item)})"
        if node.field is None:
            return self._free_text(node)
        return self._term(node)

    def _free_text(self, term: Term) -> str:
        assert isinstance(term.value, str)
        value = term.value if term.quoted else _unescape(term.value)
        if not term.quoted and _has_wildcard(term.value):
            raise QueryError("wildcards need a field (event_type:file.*); bare words match anywhere")
        p = self.params.add(value)
        cols = self.table.text_columns()
        if not cols:
            raise QueryError("free-text search is not available here; use field:value")
        parts = [f"positionCaseInsensitiveUTF8({c.column}, {p}) > 0" for c in cols]
        return "(" + " OR ".join(parts) + ")"

    def _term(self, term: Term) -> str:
        assert term.field is not None
        if term.field.startswith("metadata."):
            return self._metadata(term)
        spec = self.table.get(term.field)
        # ifNull(..., 0): a row without the value fails the test, so NOT includes it (Lucene-like).
        cond = self._condition(term.field, spec, term)
        return f"ifNull({cond}, 0)" if spec.nullable else cond

    def _metadata(self, term: Term) -> str:
        assert term.field is not None
        key = term.field.removeprefix("metadata.")
        metadata = self.table.fields.get("metadata")
        if metadata is None or metadata.kind is not Kind.METADATA:
            raise QueryError("metadata.<key> search is not available here")
        if not _METADATA_KEY.fullmatch(key):
            raise QueryError(f"invalid metadata key {key!r}")
        column = f"visitParamExtractString({metadata.column}, {self.params.add(key)})"
        return self._condition(term.field, SearchField(column, Kind.STRING), term)

    def _condition(self, name: str, spec: SearchField, term: Term) -> str:
        col = spec.column
        if term.op == "exists":
            if spec.kind is Kind.ARRAY:
                return f"notEmpty({col})"
            if spec.nullable:
                return f"isNotNull({col})"
            return f"{col} != ''" if spec.kind in (Kind.STRING, Kind.METADATA) else "1"
        if spec.kind is Kind.METADATA:
            raise QueryError("search a metadata key as metadata.<key>:value")
        if spec.kind is Kind.STRING:
            return self._string(name, col, term)
        if spec.kind is Kind.ARRAY:
            if term.op != "=":
                raise QueryError(f"{name} holds a list; only {name}:value works")
            assert isinstance(term.value, str)
            value = term.value if term.quoted else _unescape(term.value)
            if not term.quoted and _has_wildcard(term.value):
                return f"arrayExists(x -> x LIKE {self.params.add(like_pattern(term.value))}, {col})"
            return f"has({col}, {self.params.add(value)})"
        if spec.kind is Kind.SEVERITY:
            return self._severity(name, col, term)
        def convert(value: str) -> int | float:
            return parse_time_us(name, value) if spec.kind is Kind.TIME else _number(name, value)

        if term.op == "range":
            assert isinstance(term.value, Range)
            parts = []
            if term.value.low is not None:
                parts.append(f"{col} >= {self.params.add(convert(term.value.low))}")
            if term.value.high is not None:
                parts.append(f"{col} <= {self.params.add(convert(term.value.high))}")
            return "(" + " AND ".join(parts) + ")" if parts else "1"
        assert isinstance(term.value, str)
        if not term.quoted and _has_wildcard(term.value):
            raise QueryError(f"{name} is {spec.kind.value}; wildcards work on text fields only")
        return f"{col} {term.op} {self.params.add(convert(term.value))}"

    def _string(self, name: str, col: str, term: Term) -> str:
        if term.op == "range" or term.op in (">", ">=", "<", "<="):
            raise QueryError(f"{name} is text; ranges and comparisons work on numeric fields")
        assert isinstance(term.value, str)
        if not term.quoted and _has_wildcard(term.value):
            return f"{col} LIKE {self.params.add(like_pattern(term.value))}"
        value = term.value if term.quoted else _unescape(term.value)
        return f"{col} = {self.params.add(value)}"

    def _severity(self, name: str, col: str, term: Term) -> str:
        if term.op == "range":
            assert isinstance(term.value, Range)
            low = _severity_rank(name, term.value.low) if term.value.low else 0
            high = _severity_rank(name, term.value.high) if term.value.high else len(SEVERITIES) - 1
            allowed = SEVERITIES[low:high + 1]
        else:
            assert isinstance(term.value, str)
            rank = _severity_rank(name, term.value)
            allowed = {
                "=": SEVERITIES[rank:rank + 1],
                ">": SEVERITIES[rank + 1:],
                ">=": SEVERITIES[rank:],
                "<": SEVERITIES[:rank],
                "<=": SEVERITIES[:rank + 1],
            }[term.op]
        if not allowed:
            return "0"
        return f"{col} IN {self.params.add(tuple(allowed))}"


@dataclass(frozen=True)
class CompiledSearch:
    where: str
    """A boolean SQL expression with ``%(sN)s`` placeholders."""
    params: dict[str, Any]


def compile_where(text: str, table: FieldTable) -> CompiledSearch:
    """Parse and compile a search to a WHERE expression and its parameters."""
    compiler = _Compiler(table)
    where = compiler.compile(parse(text))
    return CompiledSearch(where, compiler.params.values)


# --------------------------------------------------------------------------------------------
# The events table


def _f(column: str, kind: Kind, *, nullable: bool = False, text: bool = False) -> SearchField:
    return SearchField(column, kind, nullable, text)


S, N, T = Kind.STRING, Kind.NUMBER, Kind.TIME
EVENT_FIELDS = FieldTable(
    fields={
        "timestamp": _f("ts_us", T),
        "event_id": _f("event_id", S),
        "event_type": _f("event_type", S),
        "session_id": _f("session_id", S),
        "agent": _f("agent", S, text=True),
        "source": _f("source", S),
        "severity": _f("severity", Kind.SEVERITY),
        "task_id": _f("task_id", S),
        "prompt_id": _f("prompt_id", S),
        "tool_use_id": _f("tool_use_id", S),
        "trace_id": _f("trace_id", S),
        "payload_type": _f("payload_type", S),
        "file_path": _f("file_path", S, text=True),
        "file_size_bytes": _f("file_size_bytes", N, nullable=True),
        "lines_added": _f("lines_added", N, nullable=True),
        "lines_removed": _f("lines_removed", N, nullable=True),
        "command_binary": _f("command_binary", S, text=True),
        "command_args": _f("command_args", Kind.ARRAY),
        "exit_code": _f("exit_code", N, nullable=True),
        "duration_ms": _f("duration_ms", N, nullable=True),
        "cpu_time_ms": _f("cpu_time_ms", N, nullable=True),
        "peak_memory_mib": _f("peak_memory_mib", N, nullable=True),
        "test_suite": _f("test_suite", S, text=True),
        "test_name": _f("test_name", S, text=True),
        "test_outcome": _f("test_outcome", S),
        "coverage_pct": _f("coverage_pct", N, nullable=True),
        "build_component": _f("build_component", S, text=True),
        "build_type": _f("build_type", S),
        "build_outcome": _f("build_outcome", S),
        "network_protocol": _f("network_protocol", S),
        "network_domain": _f("network_domain", S, text=True),
        "network_endpoint": _f("network_endpoint", S),
        "status_code": _f("status_code", N, nullable=True),
        "bytes_sent": _f("bytes_sent", N, nullable=True),
        "bytes_received": _f("bytes_received", N, nullable=True),
        "model": _f("model", S, text=True),
        "input_tokens": _f("input_tokens", N),
        "output_tokens": _f("output_tokens", N),
        "cache_read_tokens": _f("cache_read_tokens", N),
        "cache_creation_tokens": _f("cache_creation_tokens", N),
        "cost_usd": _f("cost_usd", N, nullable=True),
        "memory_mib": _f("memory_mib", N, nullable=True),
        "cpu_pct": _f("cpu_pct", N, nullable=True),
        "error_type": _f("error_type", S, text=True),
        "error_message": _f("error_message", S, text=True),
        "metadata": _f("metadata", Kind.METADATA),
        "redacted_fields": _f("redacted_fields", Kind.ARRAY),
    },
    aliases={
        "type": "event_type", "session": "session_id", "file": "file_path", "path": "file_path",
        "command": "command_binary", "binary": "command_binary", "args": "command_args",
        "duration": "duration_ms", "suite": "test_suite", "test": "test_name",
        "component": "build_component", "domain": "network_domain", "status": "status_code",
        "cost": "cost_usd", "error": "error_message", "time": "timestamp",
    },
)

# One line a person can read, whatever the family.
_DETAIL = """multiIf(
        file_path != '', file_path,
        command_binary != '', concat(command_binary, ' ', arrayStringConcat(command_args, ' '),
            if(isNull(exit_code), '', concat(' -> exit ', toString(assumeNotNull(exit_code))))),
        test_name != '', concat(test_suite, '::', test_name, ' ', test_outcome),
        build_component != '', concat(build_component, ' ', build_outcome),
        model != '', concat(model, ' ', toString(input_tokens), '+', toString(output_tokens),
            ' tokens'),
        network_domain != '', concat(network_domain, network_endpoint),
        error_message != '', error_message,
        '')"""


@dataclass(frozen=True)
class SearchQuery:
    sql: str
    params: dict[str, Any]


def compile_search(
    text: str,
    *,
    since_s: int,
    until_s: int,
    limit: int = 100,
    table: FieldTable = EVENT_FIELDS,
) -> SearchQuery:
    """The whole SELECT for a search over telemetry_events, newest first, one row per event_id.

    ``since_s``/``until_s`` (Unix seconds, until exclusive) bound the scan to the partitions
    of the window; the gateway's search endpoint calls this too.
    """
    if limit < 1 or limit > 100_000:
        raise QueryError("limit must be between 1 and 100000")
    where = compile_where(text, table)
    params = dict(where.params)
    params.update(since=since_s, until=until_s, limit=limit)
    sql = f"""
SELECT
    timestamp,
    ts_us,
    event_id,
    session_id,
    agent,
    event_type,
    severity,
    {_DETAIL} AS detail
FROM telemetry_events
WHERE timestamp >= toDateTime(%(since)s) AND timestamp < toDateTime(%(until)s)
  AND {where.where}
ORDER BY ts_us DESC, event_id
LIMIT 1 BY event_id
LIMIT %(limit)s
"""
    return SearchQuery(sql, params)
