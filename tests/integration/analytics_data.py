"""The small, hand-checkable event set the analytics integration tests load into ClickHouse.

Events are built with ``pipeline.model.new_event`` and mapped with the sink's own
``consumers.clickhouse.rows.event_row``, so the fixture's rows are exactly what the sink writes.
All on 2026-01-05 (UTC) except one event the day before, outside every test window.
Five sessions, each shaped for some of the queries (expected numbers live in the tests):

- sess-a: file edits by claude-code and its subagent erlang-otp-developer; a failed task
- sess-b: builds (api, web) and tests (unit, integ) with coverage
- sess-c: agent test-writer; a compile-fix loop of gcc with rising memory, a retry storm of pytest
- sess-d: a flaky test, a test that only looks flaky across a file change, a slow test, a stall
- sess-e: LLM requests of two models, one 15-minute window over $20/hour
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consumers.clickhouse.rows import EVENT_COLUMNS, event_row
from pipeline.model import new_event

DAY = datetime(2026, 1, 5, tzinfo=UTC)
SINCE = "2026-01-05T00:00:00Z"
UNTIL = "2026-01-06T00:00:00Z"


def us(clock: str, day: datetime = DAY) -> int:
    """'10:05:30' on the fixture day -> microseconds since the epoch."""
    h, m, s = (int(x) for x in clock.split(":"))
    return int(day.replace(hour=h, minute=m, second=s).timestamp()) * 1_000_000


def _ev(eid: str, event_type: str, session: str, clock: str, payload: dict[str, Any] | None = None,
        *, agent: str = "claude-code", **extra: Any) -> dict[str, Any]:
    return new_event(event_type, session, payload, agent=agent, event_id=eid,
                     timestamp_us=us(clock), source="sdk", **extra)


def _file(eid: str, session: str, clock: str, path: str, added: int | None, removed: int | None,
          *, event_type: str = "file.write", agent: str = "claude-code") -> dict[str, Any]:
    return _ev(eid, event_type, session, clock,
               {"path": path, "lines_added": added, "lines_removed": removed}, agent=agent)


def _build(eid: str, clock: str, component: str, outcome: str, duration: int) -> dict[str, Any]:
    return _ev(eid, "build.completed", "sess-b", clock,
               {"component": component, "outcome": outcome, "duration_ms": duration})


def _test(eid: str, session: str, clock: str, suite: str, name: str, outcome: str,
          duration: int | None = None, coverage: float | None = None) -> dict[str, Any]:
    return _ev(eid, "test.executed", session, clock,
               {"suite": suite, "test_name": name, "outcome": outcome, "duration_ms": duration,
                "coverage_pct": coverage})


def _cmd(eid: str, clock: str, binary: str, args: list[str], exit_code: int, duration: int,
         cpu_user: int | None = None, cpu_system: int | None = None,
         peak: float | None = None) -> dict[str, Any]:
    return _ev(eid, "command.executed", "sess-c", clock,
               {"binary": binary, "args": args, "exit_code": exit_code, "duration_ms": duration,
                "cpu_user_ms": cpu_user, "cpu_system_ms": cpu_system, "peak_memory_mib": peak},
               agent="test-writer")


def _llm(eid: str, clock: str, model: str, tin: int, tout: int, cache_read: int,
         cache_create: int, cost: float | None) -> dict[str, Any]:
    return _ev(eid, "llm.request", "sess-e", clock,
               {"model": model, "input_tokens": tin, "output_tokens": tout,
                "cache_read_tokens": cache_read, "cache_creation_tokens": cache_create,
                "cost_usd": cost})


def events() -> list[dict[str, Any]]:
    outside = new_event("file.write", "sess-a", {"path": "src/app.py", "lines_added": 1000,
                                                 "lines_removed": 1000},
                        event_id="a0", timestamp_us=us("23:00:00", datetime(2026, 1, 4, tzinfo=UTC)),
                        source="sdk")
    return [
        outside,
        # sess-a
        _ev("a1", "session.started", "sess-a", "10:00:00"),
        _file("a2", "sess-a", "10:01:00", "src/app.py", 10, 2),
        _file("a3", "sess-a", "10:02:00", "src/app.py", 5, 0, agent="erlang-otp-developer"),
        _file("a4", "sess-a", "10:03:00", "src/lib.py", 7, 3),
        _file("a5", "sess-a", "10:04:00", "src/old.py", None, None, event_type="file.delete"),
        _file("a6", "sess-a", "11:10:00", "src/app.py", 20, 4),
        _ev("a7", "agent.task.failed", "sess-a", "11:20:00",
            {"agent_name": "erlang-otp-developer", "error_type": "CompileError",
             "error_message": "undefined function foo/1"}, agent="erlang-otp-developer"),
        _ev("a8", "session.ended", "sess-a", "11:30:00"),
        # sess-b
        _ev("b1", "session.started", "sess-b", "10:00:00"),
        _build("b2", "10:10:00", "api", "failure", 100),
        _build("b3", "10:20:00", "api", "success", 200),
        _build("b4", "10:30:00", "web", "success", 300),
        _build("b5", "10:40:00", "api", "success", 400),
        _build("b6", "11:05:00", "web", "success", 1000),
        _test("b7", "sess-b", "10:15:00", "unit", "test_a", "failed", 50, 50.0),
        _test("b8", "sess-b", "10:25:00", "unit", "test_a", "passed", 60, 55.0),
        _test("b9", "sess-b", "10:35:00", "unit", "test_b", "passed", 70),
        _test("b10", "sess-b", "10:45:00", "integ", "test_c", "errored", 500),
        _test("b11", "sess-b", "10:50:00", "integ", "test_c", "skipped"),
        _test("b12", "sess-b", "11:15:00", "integ", "test_c", "passed", 400, 60.0),
        _ev("b13", "session.ended", "sess-b", "11:40:00"),
        # sess-c
        _ev("c1", "session.started", "sess-c", "12:00:00", agent="test-writer"),
        _cmd("c2", "12:00:10", "gcc", ["main.c"], 1, 1000, 600, 400, 100.0),
        _cmd("c3", "12:01:00", "gcc", ["main.c"], 1, 1000, 1000, None, 130.0),
        _cmd("c4", "12:02:00", "gcc", ["main.c"], 1, 1000, 1000, None, 170.0),
        _cmd("c5", "12:03:00", "gcc", ["main.c"], 1, 1000, 1000, None, 180.0),
        _ev("c6", "file.write", "sess-c", "12:04:00",
            {"path": "src/main.c", "lines_added": 3, "lines_removed": 1}, agent="test-writer"),
        _cmd("c7", "12:05:00", "gcc", ["main.c"], 0, 500, 300, None, 90.0),
        _cmd("c8", "12:06:00", "pytest", [], 1, 2000),
        _cmd("c9", "12:07:00", "pytest", [], 1, 2000),
        _cmd("c10", "12:30:00", "pytest", [], 1, 2000),
        # sess-d
        _ev("d1", "session.started", "sess-d", "13:00:00"),
        _test("d2", "sess-d", "13:01:00", "flaky-suite", "test_x", "passed"),
        _test("d3", "sess-d", "13:01:30", "flaky-suite", "test_y", "failed"),
        _test("d4", "sess-d", "13:02:00", "flaky-suite", "test_x", "failed"),
        _test("d5", "sess-d", "13:02:30", "flaky-suite", "test_y", "passed"),
        _test("d6", "sess-d", "13:03:00", "flaky-suite", "test_x", "passed"),
        _file("d7", "sess-d", "13:04:00", "src/x.py", 1, 1),
        _test("d8", "sess-d", "13:05:00", "flaky-suite", "test_x", "failed"),
        _test("d9", "sess-d", "13:05:30", "flaky-suite", "test_y", "failed"),
        _test("d10", "sess-d", "13:06:00", "flaky-suite", "test_x", "passed"),
        _test("d11", "sess-d", "13:10:00", "slow-suite", "test_s", "passed", 100),
        _test("d12", "sess-d", "13:11:00", "slow-suite", "test_s", "passed", 100),
        _test("d13", "sess-d", "13:12:00", "slow-suite", "test_s", "passed", 100),
        _test("d14", "sess-d", "13:13:00", "slow-suite", "test_s", "passed", 100),
        _test("d15", "sess-d", "13:14:00", "slow-suite", "test_s", "passed", 100),
        _test("d16", "sess-d", "13:15:00", "slow-suite", "test_s", "passed", 500),
        _ev("d17", "user.prompt", "sess-d", "13:30:00", {"prompt_length": 12}),
        _ev("d18", "session.ended", "sess-d", "13:40:00"),
        # sess-e
        _ev("e1", "session.started", "sess-e", "14:00:00"),
        _llm("e2", "14:01:00", "claude-opus-4", 1000, 200, 5000, 100, 2.0),
        _llm("e3", "14:05:00", "claude-opus-4", 2000, 300, 0, 0, 4.0),
        _llm("e4", "14:20:00", "claude-sonnet-4", 500, 50, 0, 0, 0.5),
        _llm("e5", "14:21:00", "claude-sonnet-4", 100, 10, 0, 0, None),
        _ev("e6", "session.ended", "sess-e", "14:30:00"),
    ]


def rows(evs: list[dict[str, Any]] | None = None) -> list[tuple[Any, ...]]:
    return [event_row(e, "agent.telemetry.events", 0, i)
            for i, e in enumerate(events() if evs is None else evs)]


def insert(conn: Any, database: str, evs: list[dict[str, Any]] | None = None) -> int:
    data = rows(evs)
    conn.execute(f"INSERT INTO {database}.telemetry_events ({', '.join(EVENT_COLUMNS)}) VALUES",
                 data)
    return len(data)
