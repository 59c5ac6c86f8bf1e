"""Ad-hoc analyst SQL, read-only twice over: a statement-kind check here and ``readonly=1`` on the server.

The server setting is the real guard (ClickHouse 18.16 refuses INSERT, DDL, OPTIMIZE, SET and table
functions under it; checked by the integration tests); the check gives a clear message first and
catches what readonly lets through (``KILL QUERY``, a second statement, ``INTO OUTFILE``).
"""

from __future__ import annotations

import re
from typing import Any

from consumers.clickhouse.output import ResultSet
from pipeline.errors import QueryError, TransientError

READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS"})
_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<string>'(?:[^'\\]|\\.|'')*')
    | (?P<quoted_ident>`(?:[^`\\]|\\.)*`|"(?:[^"\\]|\\.)*")
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<semicolon>;)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def _words(sql: str) -> list[str]:
    """Upper-cased keywords/identifiers outside strings and comments, with ';' kept as a word."""
    out: list[str] = []
    pos = 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if match is None:  # an unterminated string or comment: let nothing through
            raise QueryError("unterminated string, identifier or comment in SQL")
        kind = match.lastgroup
        if kind == "word":
            out.append(match.group(0).upper())
        elif kind == "semicolon":
            out.append(";")
        elif kind == "other" and match.group(0) in "'`\"":
            raise QueryError("unterminated string or identifier in SQL")
        elif kind == "other" and match.group(0) == "/" and sql.startswith("/*", pos):
            raise QueryError("unterminated comment in SQL")
        pos = match.end()
    return out


def check_read_only(sql: str) -> str:
    """Return the statement without a trailing ';' if it is one read statement; else QueryError."""
    words = _words(sql)
    while words and words[-1] == ";":
        words.pop()
    if not words:
        raise QueryError("empty SQL")
    if ";" in words:
        raise QueryError("one statement at a time")
    if words[0] not in READ_STATEMENTS:
        raise QueryError(
            f"only read-only statements ({', '.join(sorted(READ_STATEMENTS))}) are allowed; "
            f"got {words[0]}"
        )
    for i, word in enumerate(words[:-1]):
        if word == "INTO" and words[i + 1] == "OUTFILE":
            raise QueryError("INTO OUTFILE is not allowed")
    return sql.strip().rstrip(";").rstrip()


def readonly_settings(max_rows: int, max_seconds: float) -> dict[str, Any]:
    return {
        "readonly": 1,
        "max_execution_time": max_seconds,
        "max_result_rows": max_rows + 1,
        "result_overflow_mode": "break",
    }


def run_sql(conn: Any, sql: str, *, max_rows: int = 10_000, max_seconds: float = 60.0) -> tuple[
        ResultSet, bool]:
    """Run a read-only statement; returns the rows (at most ``max_rows``) and whether it was cut."""
    from clickhouse_driver.errors import Error as ClickHouseError
    from clickhouse_driver.errors import ServerException

    statement = check_read_only(sql)
    try:
        # params=None: the driver does no %-substitution, the analyst's text goes as written.
        rows, types = conn.execute(
            statement, None, with_column_types=True,
            settings=readonly_settings(max_rows, max_seconds),
        )
    except ServerException as exc:
        raise QueryError(f"ClickHouse refused the query: {_first_line(exc)}") from exc
    except (ClickHouseError, OSError, EOFError) as exc:
        raise TransientError(f"ClickHouse unavailable: {exc}") from exc
    truncated = len(rows) > max_rows
    return ResultSet(tuple(name for name, _ in types), list(rows[:max_rows])), truncated


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("Code:")]
    first = lines[0] if lines else text
    return first.split(" Stack trace:")[0].strip()
