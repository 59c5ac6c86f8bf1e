"""Output formats, durations, and the read-only statement check of `agentwatch sql`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from consumers.clickhouse.adhoc import check_read_only
from consumers.clickhouse.output import ResultSet, parse_duration, render, to_jsonable
from pipeline.errors import QueryError

RESULT = ResultSet(("agent", "events", "rate", "hour"), [
    ("claude-code", 43, 0.023256, datetime(2026, 1, 5, 10, tzinfo=UTC)),
    ("a, \"quoted\"", 2, None, datetime(2026, 1, 5, 11, tzinfo=UTC)),
])


def test_json_output_is_a_list_of_objects_with_iso_times() -> None:
    assert json.loads(render(RESULT, "json")) == [
        {"agent": "claude-code", "events": 43, "rate": 0.023256, "hour": "2026-01-05T10:00:00+00:00"},
        {"agent": 'a, "quoted"', "events": 2, "rate": None, "hour": "2026-01-05T11:00:00+00:00"},
    ]


def test_csv_output_quotes_and_leaves_nulls_empty() -> None:
    assert render(RESULT, "csv").splitlines() == [
        "agent,events,rate,hour",
        "claude-code,43,0.0233,2026-01-05T10:00:00+00:00",
        '"a, ""quoted""",2,,2026-01-05T11:00:00+00:00',
    ]


def test_table_output_aligns_numbers_right_and_counts_rows() -> None:
    lines = render(RESULT, "table").splitlines()
    assert lines[0].split() == ["agent", "events", "rate", "hour"]
    assert lines[2].startswith("claude-code") and "     43" in lines[2]
    assert lines[-1] == "(2 rows)"
    assert render(ResultSet(("x",), []), "table").splitlines()[-1] == "(0 rows)"


def test_to_jsonable_handles_driver_types() -> None:
    import uuid
    from decimal import Decimal

    assert to_jsonable([float("nan"), Decimal("1.5"), uuid.UUID(int=1), b"\xff"]) == [
        None, 1.5, "00000000-0000-0000-0000-000000000001", "\ufffd"]


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(QueryError, match="unknown format"):
        render(RESULT, "xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [
    ("24h", 86_400), ("90s", 90), ("30m", 1800), ("7d", 604_800), ("2w", 1_209_600),
    ("1.5h", 5400), (" 1H ", 3600)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "24", "-1h", "1y"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(QueryError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "select count() from telemetry_events;",
    "  -- a comment\nWITH 1 AS x SELECT x",
    "/* hello */ SELECT 'DROP TABLE x; INSERT' AS s",
    "SHOW TABLES",
    "DESCRIBE TABLE telemetry_events",
    "EXISTS TABLE telemetry_events",
    "SELECT `weird;name` FROM t",
])
def test_read_statements_pass(sql: str) -> None:
    assert check_read_only(sql) == sql.strip().rstrip(";").rstrip()


@pytest.mark.parametrize(("sql", "message"), [
    ("INSERT INTO t VALUES (1)", "got INSERT"),
    ("DROP TABLE telemetry_events", "got DROP"),
    ("ALTER TABLE t DELETE WHERE 1", "got ALTER"),
    ("OPTIMIZE TABLE t FINAL", "got OPTIMIZE"),
    ("KILL QUERY WHERE 1", "got KILL"),
    ("SET readonly = 0", "got SET"),
    ("SYSTEM STOP MERGES", "got SYSTEM"),
    ("/* SELECT */ TRUNCATE TABLE t", "got TRUNCATE"),
    ("SELECT 1; DROP TABLE t", "one statement at a time"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("", "empty SQL"),
    ("-- only a comment", "empty SQL"),
    ("SELECT 'unterminated", "unterminated"),
])
def test_writes_and_tricks_are_refused(sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        check_read_only(sql)
