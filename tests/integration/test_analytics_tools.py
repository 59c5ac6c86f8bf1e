"""`agentwatch search`, `sql` and `query` end to end against real ClickHouse (fixture of
analytics_data.py), including that ClickHouse 18.16 itself refuses writes under readonly=1."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import analytics_data as data
import pytest
from clickhouse_driver.errors import ServerException

from consumers.clickhouse import queries
from consumers.clickhouse.adhoc import readonly_settings, run_sql
from consumers.clickhouse.search import compile_search
from pipeline.cli import main
from pipeline.errors import QueryError
from pipeline.migrations import apply_migrations, client
from pipeline.settings import ClickHouseSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def db(clickhouse: ClickHouseSettings) -> Iterator[str]:
    name = f"analytics_tools_{uuid.uuid4().hex[:10]}"
    apply_migrations(clickhouse, name)
    conn = client(clickhouse, name)
    conn.execute(f"SYSTEM STOP MERGES {name}.telemetry_events")
    data.insert(conn, name)
    data.insert(conn, name)  # every event twice, unmerged: search must show each once
    conn.disconnect()
    try:
        yield name
    finally:
        admin = client(clickhouse)
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.disconnect()


@pytest.fixture
def conn(clickhouse: ClickHouseSettings, db: str) -> Iterator[Any]:
    c = client(clickhouse, db)
    yield c
    c.disconnect()


def search_ids(conn: Any, text: str, limit: int = 100) -> list[str]:
    since, until = queries.window(data.SINCE, data.UNTIL)
    compiled = compile_search(text, since_s=since, until_s=until, limit=limit)
    result = queries.execute(conn, compiled.sql, compiled.params, label="search")
    return [row["event_id"] for row in result.as_dicts()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("event_type:file.write AND agent:erlang-otp-developer", ["a3"]),
        # Newest first; c7 and b10/d16 take exactly 500 ms, the gcc loop 1000, pytest 2000.
        ("duration_ms:>450", ["d16", "c10", "c9", "c8", "c7", "c5", "c4", "c3", "c2", "b6",
                              "b10"]),
        ("duration_ms:[500 TO 999]", ["d16", "c7", "b10"]),
        ("severity:>=warning NOT agent:test-writer",
         ["d9", "d8", "d4", "d3", "a7", "b10", "b7", "b2"]),
        ("file_path:src/*.py", ["d7", "a6", "a5", "a4", "a3", "a2"]),  # a0 is the day before
        ('"undefined FUNCTION"', ["a7"]),
        ("event_type:command.executed AND NOT exit_code:0",
         ["c10", "c9", "c8", "c5", "c4", "c3", "c2"]),
        ("cost_usd:*", ["e4", "e3", "e2"]),
        ("(suite:unit OR suite:integ) AND test_outcome:passed", ["b12", "b9", "b8"]),
        ("timestamp:[2026-01-05T14:00:00Z TO 2026-01-05T14:05:00Z]", ["e3", "e2", "e1"]),
        ("args:main.c AND exit_code:0", ["c7"]),
        ("agent:\"x' OR '1'='1\"", []),
        ("event_type:\"file.*\"", []),
    ],
)
def test_search_finds_exactly_the_matching_events_once(conn: Any, text: str,
                                                       expected: list[str]) -> None:
    assert search_ids(conn, text) == expected


def test_search_limit_keeps_the_newest(conn: Any) -> None:
    assert search_ids(conn, "session:sess-e", limit=2) == ["e6", "e5"]


def test_sql_runs_reads_and_caps_rows(conn: Any) -> None:
    result, truncated = run_sql(conn, "SELECT count() AS n, uniqExact(event_id) AS ids "
                                      "FROM telemetry_events")
    events = len(data.events())
    assert (result.columns, result.rows, truncated) == (("n", "ids"), [(2 * events, events)],
                                                        False)
    result, truncated = run_sql(conn, "SELECT number FROM system.numbers LIMIT 100", max_rows=10)
    assert (len(result.rows), truncated) == (10, True)
    with pytest.raises(QueryError, match="ClickHouse refused the query"):
        run_sql(conn, "SELECT no_such_column FROM telemetry_events")


@pytest.mark.parametrize("statement", [
    "INSERT INTO telemetry_events (event_id) VALUES ('x')",
    "CREATE TABLE evil (x UInt8) ENGINE = Memory",
    "DROP TABLE telemetry_events",
    "ALTER TABLE telemetry_events DELETE WHERE 1",
    "OPTIMIZE TABLE telemetry_events FINAL",
    "SELECT * FROM numbers(3)",
])
def test_the_server_refuses_writes_under_readonly_even_without_our_check(
        conn: Any, statement: str) -> None:
    """readonly=1 is honoured by 18.16: the statement check is not the only guard."""
    with pytest.raises(ServerException) as info:
        conn.execute(statement, settings=readonly_settings(10, 10))
    assert info.value.code == 164  # READONLY
    assert conn.execute("SELECT count() FROM telemetry_events")[0][0] == 2 * len(data.events())


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, clickhouse: ClickHouseSettings, db: str) -> None:
    monkeypatch.setenv("AGENTWATCH_CLICKHOUSE__HOST", clickhouse.host)
    monkeypatch.setenv("AGENTWATCH_CLICKHOUSE__PORT", str(clickhouse.port))
    monkeypatch.setenv("AGENTWATCH_CLICKHOUSE__DATABASE", db)


@pytest.mark.usefixtures("cli_env")
def test_cli_query_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["query", "build_time_by_component", "--since", data.SINCE, "--until",
                 data.UNTIL, "--format", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["component"], r["builds"], r["total_ms"]) for r in rows] == [
        ("web", 2, 1300), ("api", 3, 700)]


@pytest.mark.usefixtures("cli_env")
def test_cli_query_csv_with_session_and_param(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["query", "retry_storms", "--session", "sess-c", "--since", data.SINCE,
                 "--until", data.UNTIL, "-p", "failures=4", "--format", "csv"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "session_id,command,runs,failed,storms,longest_streak,first_storm_at"
    assert lines[1:] == ["sess-c,gcc main.c,5,4,1,4,2026-01-05T12:03:00"]


@pytest.mark.usefixtures("cli_env")
def test_cli_search_and_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "event_type:llm.request model:claude-opus-4", "--since", data.SINCE,
                 "--until", data.UNTIL, "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(r["event_id"], r["detail"]) for r in found] == [
        ("e3", "claude-opus-4 2000+300 tokens"), ("e2", "claude-opus-4 1000+200 tokens")]
    assert main(["sql", "SELECT uniqExact(session_id) AS sessions FROM telemetry_events",
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["sessions", "5"]


@pytest.mark.usefixtures("cli_env")
def test_cli_reports_bad_input_as_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "DROP TABLE telemetry_events"]) == 2
    assert "only read-only statements" in capsys.readouterr().err
    assert main(["search", "duration_ms:>fast"]) == 2
    assert "not a number" in capsys.readouterr().err
    assert main(["query", "nope"]) == 2
    assert "no named query" in capsys.readouterr().err
