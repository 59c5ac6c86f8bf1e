"""The registry of named analyst queries: SQL with ``%(param)s`` placeholders, and their binding.

Every query reads the tables of ``deploy/clickhouse/migrations`` and is exact while the
ReplacingMergeTree still holds upstream duplicates (same event_id inserted twice, not yet
merged): each deduplicates on event_id at read time, or computes only min/max/last values that a
duplicate cannot change. Parameters reach ClickHouse through clickhouse-driver's escaping, never
by string concatenation. ``docs/analytics.md`` is generated from this registry
(``render_markdown``; a unit test keeps the two identical).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from consumers.clickhouse.output import ResultSet, parse_duration
from consumers.clickhouse.querydefs import WINDOW, WINDOW_PARAMS, NamedQuery, Param
from consumers.clickhouse.sql_analytics import ANALYTICS
from consumers.clickhouse.sql_patterns import PATTERNS
from pipeline.errors import QueryError, TransientError
from pipeline.settings import REPO_ROOT

DOC_PATH = REPO_ROOT / "docs" / "analytics.md"
__all__ = ["REGISTRY", "WINDOW", "WINDOW_PARAMS", "NamedQuery", "Param", "bind", "execute", "get",
           "render_markdown", "run", "window"]


def _time_seconds(raw: str, now_s: int, name: str) -> int:
    text = raw.strip()
    if text in ("now", ""):
        return now_s
    if re.fullmatch(r"\d+(\.\d+)?\s*[smhdw]", text.lower()):
        return now_s - int(parse_duration(text).total_seconds())
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"{name} takes a duration ago (24h, 7d) or an ISO date/datetime; got {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def bind(query: NamedQuery, given: Mapping[str, Any], *, now_us: int | None = None) -> dict[str, Any]:
    """Parameters for ``query.sql``: defaults, then ``given`` (strings as typed on the CLI)."""
    known = {p.name: p for p in query.params}
    unknown = set(given) - set(known)
    if unknown:
        raise QueryError(
            f"query {query.name} has no parameter {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(known) or 'none'}")
    out: dict[str, Any] = {}
    for name, param in known.items():
        if name in ("since", "until"):
            continue
        raw = given.get(name)
        out[name] = param.convert(param.default if raw is None else str(raw))
    if "since" in known:
        out["since"], out["until"] = window(
            str(given.get("since") or "24h"), str(given.get("until") or "now"), now_us=now_us)
    return out


def window(since: str, until: str = "now", *, now_us: int | None = None) -> tuple[int, int]:
    """``--since``/``--until`` as Unix seconds, until exclusive (the search command uses it too)."""
    now_s = (time.time_ns() // 1000 if now_us is None else now_us) // 1_000_000
    # +1: `until` is exclusive and "now" must include events of the current second.
    start, end = _time_seconds(since, now_s, "since"), _time_seconds(until, now_s + 1, "until")
    if start >= end:
        raise QueryError("--since must be before --until")
    return start, end


def execute(conn: Any, sql: str, params: Mapping[str, Any], *, label: str,
            max_seconds: float = 120.0) -> ResultSet:
    """Run analyst SQL read-only; ClickHouse errors become QueryError / TransientError."""
    from clickhouse_driver.errors import Error as ClickHouseError
    from clickhouse_driver.errors import ServerException

    try:
        rows, types = conn.execute(
            sql, dict(params), with_column_types=True,
            settings={"readonly": 1, "max_execution_time": max_seconds})
    except ServerException as exc:
        detail = " ".join(str(exc).split(" Stack trace:")[0].split())
        raise QueryError(f"{label} failed in ClickHouse: {detail}") from exc
    except (ClickHouseError, OSError, EOFError) as exc:
        raise TransientError(f"ClickHouse unavailable: {exc}") from exc
    return ResultSet(tuple(name for name, _ in types), list(rows))


def run(conn: Any, query: NamedQuery, params: Mapping[str, Any], *, max_seconds: float = 120.0
        ) -> ResultSet:
    return execute(conn, query.sql, params, label=f"query {query.name}", max_seconds=max_seconds)


def _registry() -> dict[str, NamedQuery]:
    out: dict[str, NamedQuery] = {}
    for query in (*ANALYTICS, *PATTERNS):
        if query.name in out:
            raise ValueError(f"duplicate named query {query.name}")
        declared = {p.name for p in query.params}
        if declared != query.param_names():
            raise ValueError(f"{query.name}: declared params {sorted(declared)} differ from "
                             f"placeholders {sorted(query.param_names())}")
        out[query.name] = query
    return out


REGISTRY: Mapping[str, NamedQuery] = _registry()


def get(name: str) -> NamedQuery:
    query = REGISTRY.get(name)
    if query is None:
        raise QueryError(f"no named query {name!r}; `agentwatch query --list` shows them")
    return query


# -- docs/analytics.md ----------------------------------------------------------------------

_DOC_HEADER = """# Analytics: named queries

`agentwatch query NAME [--since 24h] [--until now] [--session S] [--param k=v] [--format table|json|csv]`
runs one of the queries below against ClickHouse (read-only). `agentwatch query --list` lists them,
`agentwatch sql "SELECT ..."` runs your own read-only SQL, and `agentwatch search` finds events
with the `field:value` language (see the end of this page).

The SQL below is exactly what the command runs, with parameters written `{name:Type}`: current
`clickhouse-client` accepts them as `--param_name=value`; on ClickHouse 18.16 (no query parameters)
replace each with a literal. `since`/`until` are Unix seconds (`toDateTime(...)` compares them to
the DateTime column so whole day partitions are skipped); `session` empty means every session.

Duplicates: `telemetry_events` is a ReplacingMergeTree keyed by event_id that folds an upstream
duplicate only when parts merge, so every query either deduplicates on `event_id` at read time
(`LIMIT 1 BY event_id`, `uniqExact(event_id)` per small group, distinct
`(ts_us, cityHash64(event_id))` tuples in the pattern queries' per-session arrays) or uses only
values a duplicate cannot change (min, max, the latest value, the order of outcomes).
Percentiles are ClickHouse's `quantiles`: linear interpolation between the closest ranks, exact
up to 8,192 values per group (a uniform sample beyond).

This file is generated from `consumers/clickhouse/sql_*.py`:
`.venv/bin/python -m consumers.clickhouse.queries > docs/analytics.md`.
"""

_DOC_SEARCH = """
## Search language (`agentwatch search`)

`agentwatch search 'event_type:file.write AND agent:erlang-otp-developer' [--since 24h] [--limit N]`

| form | meaning |
|---|---|
| `field:value` | equals (`event_type:file.write`) |
| `field:"a value"` | quoted: spaces, and `*`/`?` taken literally |
| `field:src/*.py`, `field:test_?` | wildcards `*` (any run) and `?` (one character) |
| `field:*` | the field has a value |
| `field:>1000`, `>=`, `<`, `<=` | comparisons on numbers, times, severity (`severity:>=warning`) |
| `field:[100 TO 500]`, `field:100..500` | inclusive range; `*` leaves an end open |
| `metadata.key:value` | one key of the event's metadata |
| `word`, `"two words"` | free text, case-insensitive, in paths, commands, errors, test names, models |
| `a AND b`, `a b` | both |
| `a OR b` | either (AND binds tighter than OR) |
| `NOT a`, `-a` | not (an event without the field matches `NOT field:...`) |
| `( ... )` | grouping |

Time fields (`timestamp`) take ISO dates or datetimes in UTC. A backslash makes the next
character literal in unquoted values (`file:a\\*b`). Every value is sent as a query parameter.
`agentwatch search --fields` lists the fields and their short aliases (`file`, `suite`, ...).

## Ad-hoc SQL (`agentwatch sql`)

One read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXISTS) runs with the server setting
`readonly=1`, which ClickHouse 18.16 honours (writes, DDL, OPTIMIZE, SET and table functions fail
with code 164); a statement check in front refuses everything else with a clear message (a second
statement, `INTO OUTFILE`, `KILL`). `--max-rows` (10,000) and `--timeout` (60 s) bound the work.

## Retention (`agentwatch retention apply [--dry-run]`)

ClickHouse 18.16 has no TTL, so this command enforces the `retention` settings
(docs/configuration.md): events and pattern alerts by severity (debug 7 days, info 30, warning 90,
error 365, critical kept), per-user overrides (`AGENTWATCH_RETENTION__USER_DAYS='{"alice": 7}'`;
the user is the event metadata key `user_id`), dead letters 30 days, session rows 365 days after
their last event, rollups kept. A day partition whose rows have all expired is dropped; in a day
that still holds rows to keep, the expired rows are deleted with an `ALTER TABLE ... DELETE`
mutation the command waits for. It prints what it removed (table, action, partition, rows); run
it daily (cron or a systemd timer).
"""


def _doc_sql(sql: str) -> str:
    types = {}
    for query in REGISTRY.values():
        types.update({p.name: p.type for p in query.params})
    return re.sub(r"%\((\w+)\)s", lambda m: "{" + f"{m.group(1)}:{types[m.group(1)]}" + "}", sql)


def render_markdown() -> str:
    parts = [_DOC_HEADER, "\n## Queries\n"]
    parts += [f"- [`{q.name}`](#{q.name.replace('_', '-')}): {q.title}" for q in REGISTRY.values()]
    for query in REGISTRY.values():
        parts.append(f"\n### {query.name}\n\n{query.title}. {query.description}\n")
        if query.params:
            parts.append("| parameter | type | default | meaning |\n|---|---|---|---|")
            parts += [f"| `{p.name}` | {p.type} | `{p.default or chr(39) * 2}` | {p.help} |"
                      for p in query.params]
        parts.append(f"\n```sql\n{_doc_sql(query.sql).strip()}\n```")
    parts.append(_DOC_SEARCH)
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
