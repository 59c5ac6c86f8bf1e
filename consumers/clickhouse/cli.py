"""`agentwatch query | sql | search | retention apply`: the analyst's toolkit on the command line.

Thin shells: parse arguments, call queries/adhoc/search/retention, print through output.render.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from consumers.clickhouse.output import FORMATS, ResultSet, render
from pipeline.errors import QueryError


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    fmt = {"choices": FORMATS, "default": "table", "help": "output format (default: table)"}
    if name == "query":
        parser.add_argument("query", nargs="?", help="named query (see --list)")
        parser.add_argument("--list", action="store_true", help="list the named queries")
        parser.add_argument("--since", help="window start: 24h, 7d or an ISO date (default 24h)")
        parser.add_argument("--until", help="window end: a duration ago or an ISO date (default now)")
        parser.add_argument("--session", help="only this session")
        parser.add_argument("--limit", help="rows to return (queries with a limit)")
        parser.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                            help="another parameter of the query (repeatable)")
        parser.add_argument("--show-sql", action="store_true",
                            help="print the SQL and parameters instead of running it")
        parser.add_argument("--format", **fmt)  # type: ignore[arg-type]
    elif name == "sql":
        parser.add_argument("statement", help='read-only SQL, or "-" to read it from stdin')
        parser.add_argument("--max-rows", type=int, default=10_000, help="rows to print at most")
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds before giving up")
        parser.add_argument("--format", **fmt)  # type: ignore[arg-type]
    elif name == "search":
        parser.add_argument("expression", nargs="?", default="",
                            help="e.g. 'event_type:file.write AND agent:erlang-otp-developer'")
        parser.add_argument("--since", default="24h", help="window start (default 24h)")
        parser.add_argument("--until", default="now", help="window end (default now)")
        parser.add_argument("--limit", type=int, default=100, help="events to return (default 100)")
        parser.add_argument("--fields", action="store_true", help="list the searchable fields")
        parser.add_argument("--show-sql", action="store_true", help="print the compiled SQL")
        parser.add_argument("--format", **fmt)  # type: ignore[arg-type]
    elif name == "retention apply":
        parser.add_argument("--dry-run", action="store_true",
                            help="report what would be removed without removing it")
        parser.add_argument("--format", **fmt)  # type: ignore[arg-type]
    else:  # pragma: no cover - the command table names only the above
        raise ValueError(name)


def run(args: argparse.Namespace) -> int:
    handlers = {"query": _query, "sql": _sql, "search": _search, "retention apply": _retention}
    return handlers[args.command](args)


def _connect() -> tuple[Any, Any]:
    from pipeline.migrations import client
    from pipeline.settings import load_settings

    settings = load_settings()
    return client(settings.clickhouse, settings.clickhouse.database), settings


def _print(result: ResultSet, fmt: Any) -> None:
    sys.stdout.write(render(result, fmt))


def _query(args: argparse.Namespace) -> int:
    from consumers.clickhouse import queries

    if args.list or not args.query:
        rows = [(q.name, q.title, ", ".join(p.name for p in q.params))
                for q in queries.REGISTRY.values()]
        _print(ResultSet(("query", "what", "parameters"), rows), args.format)
        return 0
    query = queries.get(args.query)
    given: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QueryError(f"--param takes NAME=VALUE; got {item!r}")
        given[key.strip()] = value
    for key in ("since", "until", "session", "limit"):
        value = getattr(args, key)
        if value is not None:
            given[key] = value
    params = queries.bind(query, given)
    if args.show_sql:
        print(query.sql.strip())
        print(f"-- parameters: {params}")
        return 0
    conn, _ = _connect()
    try:
        _print(queries.run(conn, query, params), args.format)
    finally:
        conn.disconnect()
    return 0


def _sql(args: argparse.Namespace) -> int:
    from consumers.clickhouse.adhoc import run_sql

    statement = sys.stdin.read() if args.statement == "-" else args.statement
    conn, _ = _connect()
    try:
        result, truncated = run_sql(conn, statement, max_rows=args.max_rows,
                                    max_seconds=args.timeout)
    finally:
        conn.disconnect()
    _print(result, args.format)
    if truncated:
        print(f"(stopped after {args.max_rows} rows; --max-rows for more)", file=sys.stderr)
    return 0


def _search(args: argparse.Namespace) -> int:
    from consumers.clickhouse import queries, search

    if args.fields:
        table = search.EVENT_FIELDS
        rows = [(name, spec.kind.value, ", ".join(a for a, n in table.aliases.items() if n == name))
                for name, spec in sorted(table.fields.items())]
        _print(ResultSet(("field", "kind", "aliases"), rows), args.format)
        return 0
    if not args.expression.strip():
        raise QueryError("give a search expression, e.g. 'event_type:file.write'; --fields lists fields")
    since_s, until_s = queries.window(args.since, args.until)
    compiled = search.compile_search(args.expression, since_s=since_s, until_s=until_s,
                                     limit=args.limit)
    if args.show_sql:
        print(compiled.sql.strip())
        print(f"-- parameters: {compiled.params}")
        return 0
    conn, _ = _connect()
    try:
        result = queries.execute(conn, compiled.sql, compiled.params, label="search")
    finally:
        conn.disconnect()
    _print(result, args.format)
    return 0


def _retention(args: argparse.Namespace) -> int:
    from consumers.clickhouse.retention import Retention
    from pipeline.errors import QueryError
    from pipeline.privacy import ConsentStore, retention_with_preferences

    conn, settings = _connect()
    try:
        cfg = settings.retention
        try:  # users' own retention choices (agentwatch privacy set --retention-days)
            cfg = retention_with_preferences(
                cfg, ConsentStore(conn, settings.clickhouse.database).load().values())
        except QueryError as exc:
            print(f"agentwatch retention apply: per-user preferences not read: {exc}",
                  file=sys.stderr)
        removals = Retention(conn, settings.clickhouse.database, cfg
                             ).plan_and_apply(dry_run=args.dry_run)
    finally:
        conn.disconnect()
    rows = [(r.table, r.action, r.target, r.rows) for r in removals]
    _print(ResultSet(("table", "action", "target", "rows"), rows), args.format)
    if args.format == "table":
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {sum(r.rows for r in removals)} rows in {len(removals)} step(s)")
    return 0
