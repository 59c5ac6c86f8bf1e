"""p50/p95 latency of every named query on a large generated dataset (default 10 million events).

    .venv/bin/python bench/queries.py [--rows 10000000] [--runs 10] [--keep] [--database NAME]

The events are generated inside ClickHouse (INSERT ... SELECT FROM numbers()), so loading 10M
rows takes about a minute instead of pushing them through Python. The mix looks like a busy fleet:
2,000 sessions of 5,000 events over 30 days, 9 agents, every event family the named queries read,
plus 0.5% upstream duplicates (same event_id re-sent) so the queries pay for their dedup.
Prints one line per query; record the figures in docs/benchmarks.md. Never run from tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.clickhouse.queries import REGISTRY, bind
from pipeline.migrations import apply_migrations, client
from pipeline.settings import load_settings

DAY_US = 86_400 * 1_000_000
SPAN_DAYS = 30
EVENTS_PER_SESSION = 5_000

# One row per number n: h = cityHash64(n) picks the family, v the names (file, test, command),
# w the outcomes and sizes: three hashes, so runs repeat and nothing correlates by accident.
# The session's own events are consecutive in time, like a real session.
GENERATE = """
INSERT INTO {db}.telemetry_events (
    timestamp, ts_us, event_id, session_id, event_type, agent, source, severity, payload_type,
    file_path, lines_added, lines_removed, command_binary, command_args, exit_code, duration_ms,
    cpu_time_ms, peak_memory_mib, test_suite, test_name, test_outcome, coverage_pct,
    build_component, build_outcome, model, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens, cost_usd, memory_mib, cpu_pct, metadata)
SELECT
    toDateTime(intDiv(ts, 1000000)) AS timestamp,
    ts AS ts_us,
    concat(hex(cityHash64(n, 1)), '-', hex(cityHash64(n, 2))) AS event_id,
    concat('sess-', toString(intDiv(n, {per_session}))) AS session_id,
    arrayElement(['file.write', 'file.read', 'command.executed', 'test.executed',
                  'build.completed', 'llm.request', 'resource.sample', 'agent.task.progress',
                  'agent.task.failed', 'user.prompt'], family) AS event_type,
    if(v % 3 = 0, arrayElement(['erlang-otp-developer', 'test-writer', 'code-reviewer',
                                'docs-writer', 'refactorer', 'debugger', 'planner',
                                'security-auditor'], 1 + intDiv(n, {per_session}) % 8),
       'claude-code') AS agent,
    'simulator' AS source,
    multiIf(family = 9, 'error', family = 5 AND w % 10 = 0, 'error',
            family = 4 AND w % 10 < 2, 'warning', family = 3 AND w % 10 = 0, 'warning',
            family = 7, 'debug', w % 5000 = 0, 'critical', 'info') AS severity,
    arrayElement(['FileEvent', 'FileEvent', 'CommandEvent', 'TestEvent', 'BuildEvent',
                  'LlmRequest', 'ResourceSample', 'AgentTaskEvent', 'AgentTaskEvent',
                  'UserPrompt'], family) AS payload_type,
    if(family <= 2, concat('src/pkg', toString(v % 40), '/mod', toString(v % 500), '.py'), '')
        AS file_path,
    if(family = 1, toNullable(toInt32(v % 60)), NULL) AS lines_added,
    if(family = 1, toNullable(toInt32(v % 25)), NULL) AS lines_removed,
    if(family = 3, arrayElement(['cargo', 'pytest', 'make', 'npm', 'gcc', 'git'], 1 + v % 6), '')
        AS command_binary,
    if(family = 3, ['build'], emptyArrayString()) AS command_args,
    if(family = 3, toNullable(toInt32(w % 10 = 0)), NULL) AS exit_code,
    if(family IN (3, 4, 5, 6), toNullable(toInt64(100 + w % 20000)), NULL) AS duration_ms,
    if(family = 3, toNullable(toInt64(50 + v % 5000)), NULL) AS cpu_time_ms,
    if(family = 3, toNullable(100. + w % 2000), NULL) AS peak_memory_mib,
    if(family = 4, concat('suite', toString(v % 20)), '') AS test_suite,
    if(family = 4, concat('test_', toString(v % 200)), '') AS test_name,
    if(family = 4, multiIf(w % 10 < 2, 'failed', w % 10 = 2, 'skipped', 'passed'), '')
        AS test_outcome,
    if(family = 4 AND v % 4 = 0, toNullable(40. + (n % {per_session}) / 100.), NULL)
        AS coverage_pct,
    if(family = 5, concat('component', toString(v % 10)), '') AS build_component,
    if(family = 5, if(w % 10 = 0, 'failure', 'success'), '') AS build_outcome,
    if(family = 6, arrayElement(['claude-opus-4', 'claude-sonnet-4', 'claude-haiku-4'], 1 + v % 3),
       '') AS model,
    if(family = 6, 1000 + v % 20000, 0) AS input_tokens,
    if(family = 6, 100 + v % 4000, 0) AS output_tokens,
    if(family = 6, v % 50000, 0) AS cache_read_tokens,
    if(family = 6, v % 5000, 0) AS cache_creation_tokens,
    if(family = 6, toNullable((v % 1000) / 10000.), NULL) AS cost_usd,
    if(family = 7, toNullable(500. + v % 4000), NULL) AS memory_mib,
    if(family = 7, toNullable((v % 1000) / 10.), NULL) AS cpu_pct,
    '{{}}' AS metadata
FROM (
    SELECT
        number AS n,
        cityHash64(number) AS h,
        cityHash64(number, 7) AS v,
        cityHash64(number, 13) AS w,
        multiIf(h % 100 < 25, 1, h % 100 < 40, 2, h % 100 < 60, 3, h % 100 < 75, 4,
                h % 100 < 80, 5, h % 100 < 90, 6, h % 100 < 95, 7, h % 100 < 98, 8,
                h % 100 < 99, 9, 10) AS family,
        {start_us} + toInt64(number * {step_us}) AS ts
    FROM numbers({offset}, {count})
)
"""

DUPLICATE = """
INSERT INTO {db}.telemetry_events
SELECT * FROM {db}.telemetry_events WHERE cityHash64(event_id) % 200 = 0
"""


def generate(conn: Any, db: str, rows: int, now_us: int, chunk: int = 2_000_000) -> float:
    start_us = now_us - SPAN_DAYS * DAY_US
    step_us = SPAN_DAYS * DAY_US // rows
    began = time.perf_counter()
    for offset in range(0, rows, chunk):
        conn.execute(GENERATE.format(
            db=db, per_session=EVENTS_PER_SESSION, start_us=start_us, step_us=step_us,
            offset=offset, count=min(chunk, rows - offset)),
            settings={"max_insert_block_size": 1_048_576})
        print(f"  generated {min(offset + chunk, rows):,} rows", flush=True)
    conn.execute(DUPLICATE.format(db=db))
    return time.perf_counter() - began


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _server_cpu_ms(conn: Any, query_ids: list[str]) -> list[float]:
    """User+system CPU milliseconds the server spent on each query (all its threads)."""
    rows: list[Any] = []
    for _ in range(20):  # the log is written asynchronously; FLUSH LOGS may beat the last entry
        conn.execute("SYSTEM FLUSH LOGS")
        rows = conn.execute(
            """
            SELECT ProfileEvents.Values[indexOf(ProfileEvents.Names, 'UserTimeMicroseconds')]
                 + ProfileEvents.Values[indexOf(ProfileEvents.Names, 'SystemTimeMicroseconds')]
            FROM system.query_log
            WHERE type = 2 AND query_id IN %(ids)s
            """, {"ids": tuple(query_ids)})
        if len(rows) == len(query_ids):
            break
        time.sleep(0.5)
    if not rows:
        raise RuntimeError("system.query_log holds none of the queries (log_queries off?)")
    return [r[0] / 1000 for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--database", default="agentwatch_bench_queries")
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse it)")
    parser.add_argument("--only", default="", help="comma-separated query names")
    args = parser.parse_args()

    settings = load_settings()
    ch = settings.clickhouse
    admin = client(ch)
    db = args.database
    now_us = time.time_ns() // 1000
    exists = admin.execute("SELECT count() FROM system.databases WHERE name = %(db)s", {"db": db})
    if exists[0][0] and args.keep:
        conn = client(ch, db)
        count = conn.execute("SELECT count() FROM telemetry_events")[0][0]
        print(f"reusing {db}: {count:,} rows")
        latest = conn.execute("SELECT max(ts_us) FROM telemetry_events")[0][0]
        now_us = int(latest) + 1
    else:
        admin.execute(f"DROP DATABASE IF EXISTS {db}")
        apply_migrations(ch, db)
        conn = client(ch, db)
        print(f"generating {args.rows:,} events in {db} ...", flush=True)
        elapsed = generate(conn, db, args.rows, now_us)
        count = conn.execute("SELECT count() FROM telemetry_events")[0][0]
        print(f"generated {count:,} rows (incl. duplicates) in {elapsed:.1f} s")
    only = {n for n in args.only.split(",") if n}
    windows = ("24h", f"{SPAN_DAYS + 1}d")
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores)")
    print("wall = latency seen by the client (inflated by whatever else runs on the machine); "
          "cpu = the server's user+system CPU time for the query (from system.query_log), the "
          "load-independent cost: below 1000 ms, the query finishes within 1 s on one idle core")
    print(f"{'query':27} {'window':>6} {'rows':>5} {'wall p50':>9} {'wall p95':>9} "
          f"{'cpu p50':>8} {'cpu p95':>8}")
    try:
        for query in REGISTRY.values():
            if only and query.name not in only:
                continue
            for since in windows:
                params = bind(query, {"since": since}, now_us=now_us)
                wall: dict[str, float] = {}
                result: list[Any] = []
                for _ in range(args.runs):
                    query_id = str(uuid.uuid4())
                    began = time.perf_counter()
                    result = conn.execute(query.sql, params, query_id=query_id,
                                          settings={"log_queries": 1})
                    wall[query_id] = (time.perf_counter() - began) * 1000
                cpu = _server_cpu_ms(conn, list(wall))
                walls = sorted(wall.values())
                print(f"{query.name:27} {since:>6} {len(result):>5} "
                      f"{statistics.median(walls):>9.0f} {_p95(walls):>9.0f} "
                      f"{statistics.median(cpu):>8.0f} {_p95(cpu):>8.0f}", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            admin.execute(f"DROP DATABASE IF EXISTS {db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
