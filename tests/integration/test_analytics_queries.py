"""Every named query against real ClickHouse on the hand-made fixture of analytics_data.py.

The expected numbers below were worked out by hand from the fixture (the comments show the
arithmetic). Each query runs twice: on the fixture as loaded, and after the whole fixture was
inserted a second time with merges stopped, so every event_id is present twice in unmerged parts
(an upstream re-send the ReplacingMergeTree has not folded yet): the answers must not change.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import analytics_data as data
import pytest

from consumers.clickhouse import queries
from pipeline.migrations import apply_migrations, client
from pipeline.settings import ClickHouseSettings

pytestmark = pytest.mark.integration


def at(clock: str) -> datetime:
    h, m, s = (int(x) for x in clock.split(":"))
    return datetime(2026, 1, 5, h, m, s)


@pytest.fixture(scope="module")
def loaded(clickhouse: ClickHouseSettings) -> Iterator[dict[str, Any]]:
    """A migrated database with the fixture loaded once and once again as duplicates."""
    import uuid

    db = f"analytics_{uuid.uuid4().hex[:10]}"
    apply_migrations(clickhouse, db)
    conn = client(clickhouse, db)
    dup_db = f"{db}_dup"
    apply_migrations(clickhouse, dup_db)
    dup = client(clickhouse, dup_db)
    try:
        data.insert(conn, db)
        # Stop merges first: the two copies must stay in separate, unmerged parts.
        dup.execute(f"SYSTEM STOP MERGES {dup_db}.telemetry_events")
        data.insert(dup, dup_db)
        data.insert(dup, dup_db)
        yield {"plain": conn, "duplicated": dup, "db": db, "dup_db": dup_db}
    finally:
        conn.disconnect()
        dup.disconnect()
        admin = client(clickhouse)
        admin.execute(f"DROP DATABASE IF EXISTS {db}")
        admin.execute(f"DROP DATABASE IF EXISTS {dup_db}")
        admin.disconnect()


@pytest.fixture(params=["plain", "duplicated"])
def conn(request: pytest.FixtureRequest, loaded: dict[str, Any]) -> Any:
    return loaded[request.param]


def test_the_duplicated_copy_really_holds_unmerged_duplicates(loaded: dict[str, Any]) -> None:
    total, distinct = loaded["duplicated"].execute(
        "SELECT count(), uniqExact(event_id) FROM telemetry_events")[0]
    assert (total, distinct) == (2 * len(data.events()), len(data.events()))


def run(conn: Any, name: str, **given: Any) -> list[dict[str, Any]]:
    query = queries.get(name)
    params = queries.bind(query, {"since": data.SINCE, "until": data.UNTIL, **given})
    return queries.run(conn, query, params).as_dicts()


def test_session_duration_by_agent(conn: Any) -> None:
    rows = run(conn, "session_duration_by_agent")
    # claude-code: sess-a 10:00-11:30 (5400 s), sess-b 10:00-11:40 (6000), sess-d 13:00-13:40
    # (2400), sess-e 14:00-14:30 (1800); median of 1800, 2400, 5400, 6000 = 3900.
    # erlang-otp-developer: 10:02-11:20 in sess-a; test-writer: sess-c 12:00-12:30.
    # The event of 2026-01-04 is outside the window.
    assert rows == [
        {"agent": "claude-code", "sessions": 4, "avg_duration_s": 3900.0,
         "median_duration_s": 3900.0, "max_duration_s": 6000.0, "total_duration_s": 15600.0},
        {"agent": "erlang-otp-developer", "sessions": 1, "avg_duration_s": 4680.0,
         "median_duration_s": 4680.0, "max_duration_s": 4680.0, "total_duration_s": 4680.0},
        {"agent": "test-writer", "sessions": 1, "avg_duration_s": 1800.0,
         "median_duration_s": 1800.0, "max_duration_s": 1800.0, "total_duration_s": 1800.0},
    ]


def test_session_duration_of_one_session(conn: Any) -> None:
    rows = run(conn, "session_duration_by_agent", session="sess-a")
    assert [(r["agent"], r["total_duration_s"]) for r in rows] == [
        ("claude-code", 5400.0), ("erlang-otp-developer", 4680.0)]


def test_most_modified_files(conn: Any) -> None:
    rows = run(conn, "most_modified_files")
    # src/app.py: a2 (+10 -2), a3 (+5 -0), a6 (+20 -4); a0 (+1000) is the day before.
    assert [(r["file_path"], r["modifications"], r["deletes"], r["lines_added"],
             r["lines_removed"], r["sessions"], r["last_modified"]) for r in rows] == [
        ("src/app.py", 3, 0, 35, 6, 1, at("11:10:00")),
        ("src/lib.py", 1, 0, 7, 3, 1, at("10:03:00")),
        ("src/main.c", 1, 0, 3, 1, 1, at("12:04:00")),
        ("src/old.py", 1, 1, 0, 0, 1, at("10:04:00")),
        ("src/x.py", 1, 0, 1, 1, 1, at("13:04:00")),
    ]
    assert [r["file_path"] for r in run(conn, "most_modified_files", limit="2")] == [
        "src/app.py", "src/lib.py"]


def test_error_rate_by_agent(conn: Any) -> None:
    rows = run(conn, "error_rate_by_agent")
    # claude-code: 6 (sess-a) + 13 (sess-b) + 18 (sess-d) + 6 (sess-e) = 43 events; errors: the
    # failed api build (b2); warnings: failed/errored tests b7, b10, d3, d4, d8, d9.
    # erlang-otp-developer: a3 and the failed task a7 (error). test-writer: 10 events, the
    # seven non-zero exits are warnings.
    assert rows == [
        {"agent": "erlang-otp-developer", "events": 2, "errors": 1, "warnings": 0,
         "error_rate": 0.5},
        {"agent": "claude-code", "events": 43, "errors": 1, "warnings": 6,
         "error_rate": round(1 / 43, 6)},
        {"agent": "test-writer", "events": 10, "errors": 0, "warnings": 7, "error_rate": 0.0},
    ]


def test_build_performance_trend(conn: Any) -> None:
    rows = run(conn, "build_performance_trend")
    # 10:00 hour: 100, 200, 300, 400 ms. Interpolated percentiles: p50 at rank 1.5 = 250,
    # p95 at rank 2.85 = 300 + 0.85 * 100 = 385, p99 at rank 2.97 = 397. 11:00 hour: 1000 only.
    assert [(r["hour"].replace(tzinfo=None), r["builds"], r["failures"], r["p50_ms"],
             r["p95_ms"], r["p99_ms"], r["max_ms"]) for r in rows] == [
        (at("10:00:00"), 4, 1, 250.0, 385.0, 397.0, 400),
        (at("11:00:00"), 1, 0, 1000.0, 1000.0, 1000.0, 1000),
    ]
    web = run(conn, "build_performance_trend", component="web")
    assert [(r["builds"], r["p50_ms"]) for r in web] == [(1, 300.0), (1, 1000.0)]


def test_build_time_by_component(conn: Any) -> None:
    rows = run(conn, "build_time_by_component")
    # web: 300, 1000 -> avg 650, p95 = 300 + 0.95 * 700 = 965, total 1300.
    # api: 100 (failure), 200, 400 -> avg 233.3, p50 200, p95 = 200 + 0.9 * 200 = 380.
    assert rows == [
        {"component": "web", "builds": 2, "failures": 0, "failure_rate": 0.0, "avg_ms": 650.0,
         "p50_ms": 650.0, "p95_ms": 965.0, "max_ms": 1000, "total_ms": 1300},
        {"component": "api", "builds": 3, "failures": 1, "failure_rate": 0.333333,
         "avg_ms": 233.3, "p50_ms": 200.0, "p95_ms": 380.0, "max_ms": 400, "total_ms": 700},
    ]


def test_test_success_rate_by_suite(conn: Any) -> None:
    rows = run(conn, "test_success_rate_by_suite")
    # flaky-suite: test_x P F P F P, test_y F P F -> 8 runs, 4 passed, 4 failed -> 0.5.
    # integ: errored, skipped, passed -> 1 / (1 + 0 + 1) = 0.5 (skipped is not judged).
    # unit: F, P, P -> 2/3. slow-suite: 6 passed.
    assert [(r["suite"], r["runs"], r["passed"], r["failed"], r["errored"], r["skipped"],
             r["tests"], r["success_rate"]) for r in rows] == [
        ("flaky-suite", 8, 4, 4, 0, 0, 2, 0.5),
        ("integ", 3, 1, 0, 1, 1, 1, 0.5),
        ("unit", 3, 2, 1, 0, 0, 2, 0.666667),
        ("slow-suite", 6, 6, 0, 0, 0, 1, 1.0),
    ]


def test_coverage_trajectory(conn: Any) -> None:
    rows = run(conn, "coverage_trajectory", session="sess-b")
    # 10:15 50%, 10:25 55% (last of the hour), 11:15 60%.
    assert [(r["hour"].replace(tzinfo=None), r["last_pct"], r["min_pct"], r["max_pct"],
             r["reports"]) for r in rows] == [
        (at("10:00:00"), 55.0, 50.0, 55.0, 2),
        (at("11:00:00"), 60.0, 60.0, 60.0, 1),
    ]
    assert run(conn, "coverage_trajectory", session="sess-a") == []


def test_lines_of_code_per_hour(conn: Any) -> None:
    rows = run(conn, "lines_of_code_per_hour")
    # 10:00 claude-code: a2 (+10 -2) and a4 (+7 -3); the delete a5 is not a write.
    assert [(r["hour"].replace(tzinfo=None), r["agent"], r["lines_added"], r["lines_removed"],
             r["net_lines"], r["writes"], r["files"]) for r in rows] == [
        (at("10:00:00"), "claude-code", 17, 5, 12, 2, 2),
        (at("10:00:00"), "erlang-otp-developer", 5, 0, 5, 1, 1),
        (at("11:00:00"), "claude-code", 20, 4, 16, 1, 1),
        (at("12:00:00"), "test-writer", 3, 1, 2, 1, 1),
        (at("13:00:00"), "claude-code", 1, 1, 0, 1, 1),
    ]


def test_issues_fixed_per_hour(conn: Any) -> None:
    rows = run(conn, "issues_fixed_per_hour")
    # 10:00: unit::test_a F->P at 10:25 and build api failure->success at 10:20.
    # 11:00: integ::test_c errored->(skipped ignored)->passed at 11:15.
    # 13:00: flaky-suite::test_x P F P F P has two F->P, test_y F P F one.
    assert [(r["hour"].replace(tzinfo=None), r["issues_fixed"], r["tests_fixed"],
             r["builds_fixed"]) for r in rows] == [
        (at("10:00:00"), 2, 1, 1),
        (at("11:00:00"), 1, 1, 0),
        (at("13:00:00"), 3, 3, 0),
    ]


def test_session_cost_resources(conn: Any) -> None:
    rows = run(conn, "session_cost_resources")
    # sess-c commands: CPU 1000 (600 + 400) + 1000 + 1000 + 1000 + 300 = 4300 ms;
    # memory x time: (100 + 130 + 170 + 180) MiB x 1000 ms + 90 MiB x 500 ms = 625,000 MiB.ms.
    cpu_h = 4300 / 3_600_000
    gib_h = 625_000 / 1024 / 3_600_000
    assert rows == [{"session_id": "sess-c", "agent": "test-writer", "commands": 8,
                     "cpu_hours": round(cpu_h, 6), "gib_hours": round(gib_h, 6),
                     "cost_usd": round(cpu_h * 0.04 + gib_h * 0.005, 6)}]
    priced = run(conn, "session_cost_resources", cpu_hour_usd="3600", gib_hour_usd="0")
    assert priced[0]["cost_usd"] == 4.3  # 4300 CPU-ms at $1 per CPU-second


def test_session_cost_tokens(conn: Any) -> None:
    rows = run(conn, "session_cost_tokens")
    # opus: 1000 + 2000 in, 200 + 300 out, $2 + $4; sonnet: $0.5 and a request without a cost.
    assert rows == [
        {"session_id": "sess-e", "model": "claude-opus-4", "requests": 2, "input_tokens": 3000,
         "output_tokens": 500, "cache_read_tokens": 5000, "cache_creation_tokens": 100,
         "cost_usd": 6.0},
        {"session_id": "sess-e", "model": "claude-sonnet-4", "requests": 2, "input_tokens": 600,
         "output_tokens": 60, "cache_read_tokens": 0, "cache_creation_tokens": 0,
         "cost_usd": 0.5},
    ]


def test_compile_fix_loops(conn: Any) -> None:
    # Four failed gcc runs 12:00:10-12:03:00: the fourth is the fourth within 5 minutes (> 3).
    assert run(conn, "compile_fix_loops") == [
        {"session_id": "sess-c", "agent": "test-writer", "compile_errors": 4,
         "max_in_window": 4, "first_loop_at": at("12:03:00")}]
    # The same four errors spread over more than 2 minutes never put 4 in one 2-minute window.
    assert run(conn, "compile_fix_loops", window_minutes="2") == []
    assert run(conn, "compile_fix_loops", threshold="4") == []


def test_flaky_tests(conn: Any) -> None:
    # test_x: P F P (flaky, complete at 13:03), then a file change, then F P.
    # test_y: F P | change | F is not flaky.
    assert run(conn, "flaky_tests") == [
        {"session_id": "sess-d", "suite": "flaky-suite", "test_name": "test_x", "runs": 5,
         "passed": 3, "failed": 2, "flaky_sequences": 1, "first_flaky_at": at("13:03:00")}]


def test_memory_growth(conn: Any) -> None:
    # gcc main.c peaks 100, 130 (> 120), 170 (> 156), 180 (< 204), 90: one 3-run chain c2-c4,
    # complete at c4 (12:02).
    assert run(conn, "memory_growth") == [
        {"session_id": "sess-c", "command": "gcc main.c", "runs": 5,
         "peaks_mib": [100.0, 130.0, 170.0, 180.0, 90.0], "first_growth_at": at("12:02:00")}]
    assert run(conn, "memory_growth", runs="4") == []
    assert run(conn, "memory_growth", growth_pct="31") == []  # 130 is only 30% over 100


def test_slow_tests(conn: Any) -> None:
    # slow-suite: five runs of 100 ms and one of 500; median 100, 500 > 2 x 100. unit (3 timed
    # runs) and integ (2) have fewer than 5 samples and are not judged.
    assert run(conn, "slow_tests") == [
        {"session_id": "sess-d", "suite": "slow-suite", "test_name": "test_s",
         "timestamp": at("13:15:00"), "duration_ms": 500, "suite_median_ms": 100.0,
         "times_median": 5.0}]
    assert run(conn, "slow_tests", factor="5") == []


def test_stalled_sessions(conn: Any) -> None:
    rows = run(conn, "stalled_sessions")
    # sess-c: 12:07 -> 12:30 (23 min), then no session.ended: stalled until the window's end
    # (2026-01-06 00:00, 690 min). sess-a: 10:04 -> 11:10 (66 min), 11:10 -> 11:20 (10 min).
    # sess-b: 10:00 -> 10:10, 10:50 -> 11:05, 11:05 -> 11:15. sess-d: 13:15 -> 13:30.
    # sess-e: 14:05 -> 14:20. session.ended is not progress, so ended sessions have no tail.
    assert [(r["session_id"], r["stalls"], r["longest_gap_min"], r["first_stall_at"],
             r["ongoing"]) for r in rows] == [
        ("sess-c", 2, 690.0, at("12:07:00"), 1),
        ("sess-a", 2, 66.0, at("10:04:00"), 0),
        ("sess-b", 3, 15.0, at("10:00:00"), 0),
        ("sess-d", 1, 15.0, at("13:15:00"), 0),
        ("sess-e", 1, 15.0, at("14:05:00"), 0),
    ]
    assert [r["session_id"] for r in run(conn, "stalled_sessions", stall_minutes="20")] == [
        "sess-c", "sess-a"]


def test_retry_storms(conn: Any) -> None:
    # gcc main.c fails 4 times in a row (the third at 12:02), then succeeds after a file change;
    # pytest fails 3 times (12:06, 12:07, the third at 12:30).
    assert run(conn, "retry_storms") == [
        {"session_id": "sess-c", "command": "gcc main.c", "runs": 5, "failed": 4, "storms": 1,
         "longest_streak": 4, "first_storm_at": at("12:02:00")},
        {"session_id": "sess-c", "command": "pytest", "runs": 3, "failed": 3, "storms": 1,
         "longest_streak": 3, "first_storm_at": at("12:30:00")},
    ]
    assert [r["command"] for r in run(conn, "retry_storms", failures="4")] == ["gcc main.c"]


def test_cost_spikes(conn: Any) -> None:
    # 14:00-14:15: $2 + $4 = $6 in 15 minutes = $24/hour > $20; 14:15-14:30: $0.5.
    assert run(conn, "cost_spikes") == [
        {"session_id": "sess-e", "window_start": at("14:00:00"), "requests": 2, "cost_usd": 6.0,
         "usd_per_hour": 24.0}]
    assert run(conn, "cost_spikes", usd_per_hour="24") == []


def test_alerts_by_pattern(loaded: dict[str, Any]) -> None:
    conn, db = loaded["duplicated"], loaded["dup_db"]
    row = (at("12:03:00"), data.us("12:03:00"), "alert-1", "compile_fix_loop", "sess-c",
           "test-writer", "warning", at("12:00:10"), data.us("12:00:10"), data.us("12:03:00"),
           ["c2", "c3", "c4", "c5"], "4 compile errors", "pause it", "agent.telemetry.patterns",
           0, 0)
    other = (at("12:30:00"), data.us("12:30:00"), "alert-2", "retry_storm", "sess-c",
             "test-writer", "warning", at("12:06:00"), data.us("12:06:00"), data.us("12:30:00"),
             [], "pytest failed 3 times", "", "agent.telemetry.patterns", 0, 1)
    columns = ("detected_at, detected_us, alert_id, pattern, session_id, agent, severity, "
               "window_start, window_start_us, window_end_us, evidence_event_ids, message, "
               "suggested_mitigation, kafka_topic, kafka_partition, kafka_offset")
    conn.execute(f"SYSTEM STOP MERGES {db}.pattern_alerts")
    conn.execute(f"INSERT INTO pattern_alerts ({columns}) VALUES", [row, other])
    conn.execute(f"INSERT INTO pattern_alerts ({columns}) VALUES", [row])  # a replayed alert
    assert [(r["pattern"], r["alerts"], r["sessions"], r["last_detected"])
            for r in run(conn, "alerts_by_pattern")] == [
        ("compile_fix_loop", 1, 1, at("12:03:00")), ("retry_storm", 1, 1, at("12:30:00"))]
