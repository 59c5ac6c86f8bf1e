"""The failure patterns as named queries: what the live detectors watch for, found in history.

The live detectors (processors/patterns/detectors.py) keep per-session state event by event;
these queries look at a whole window at once with ClickHouse arrays, one array per session (or
per session and test/command), sorted by time. Distinct ``(ts_us, cityHash64(event_id))`` tuples make them
immune to not-yet-merged duplicates. Lambdas take every array they read as an argument: 18.16
drops a subquery column that is only referenced inside a lambda ("Unknown identifier").
"""

from __future__ import annotations

from consumers.clickhouse.querydefs import WINDOW, WINDOW_PARAMS, NamedQuery, Param

LIMIT = Param("limit", "UInt32", "50", "rows to return")

# A compile error as the compile_fix_loop detector sees it: a build that did not succeed, or a
# failed run of a compiler or of a build tool's compile subcommand.
_BINARY = "replaceRegexpOne(command_binary, '^.*/', '')"
COMPILE_ERROR = f"""(
        (event_type = 'build.completed' AND build_outcome != 'success')
        OR (event_type = 'command.executed' AND ifNull(exit_code, 0) != 0 AND (
            {_BINARY} IN ('gcc', 'g++', 'cc', 'c++', 'clang', 'clang++', 'rustc', 'javac',
                'kotlinc', 'tsc', 'erlc', 'scalac', 'swiftc', 'ghc', 'nim', 'zig', 'make', 'ninja')
            OR ({_BINARY} = 'cargo' AND command_args[1] IN ('build', 'check', 'b'))
            OR ({_BINARY} = 'go' AND command_args[1] IN ('build', 'vet'))
            OR ({_BINARY} IN ('rebar3', 'mix') AND command_args[1] = 'compile')
            OR ({_BINARY} = 'mvn' AND command_args[1] IN ('compile', 'package'))
            OR ({_BINARY} = 'gradle' AND command_args[1] IN ('build', 'compileJava', 'assemble'))
            OR ({_BINARY} IN ('npm', 'dotnet', 'dune') AND has(command_args, 'build'))
            OR ({_BINARY} = 'cmake' AND command_args[1] = '--build')))
    )"""
_COMMAND_KEY = ("if(empty(command_args), command_binary, "
                "concat(command_binary, ' ', arrayStringConcat(command_args, ' ')))")
# Events that show the session moving (the stall detector's list).
_PROGRESS = ("(event_type = 'session.started' OR match(event_type, "
             "'^(agent|file|command|test|build|llm|user)\\\\.'))")

def _timeline(target: str, columns: str, names: str) -> str:
    """Rows of ``target`` with ``epoch``: file changes in their session before them.

    One sorted array per session of the target events and the file.write/file.delete events,
    deduplicated on (ts_us, cityHash64(event_id)), then unrolled; a running count of file changes numbers
    the stretches of time in which the code did not change.
    """
    fields = [n.strip() for n in names.split(",")]
    picks = ",\n        ".join(
        f"tupleElement(e, {i + 4}) AS {name}" for i, name in enumerate(fields))
    return f"""
    SELECT
        session_id,
        tupleElement(e, 1) AS ts_us,
        epoch,
        {picks}
    FROM
    (
        SELECT
            session_id,
            arraySort(groupUniqArray((ts_us, cityHash64(event_id),
                toUInt8(event_type IN ('file.write', 'file.delete')), {columns}))) AS timeline,
            arrayCumSum(arrayMap(x -> tupleElement(x, 3), timeline)) AS epochs
        FROM telemetry_events
        WHERE (event_type IN ('file.write', 'file.delete') OR ({target}))
          AND {WINDOW}
        GROUP BY session_id
    )
    ARRAY JOIN timeline AS e, epochs AS epoch
    WHERE tupleElement(e, 3) = 0
    """


COMPILE_FIX_LOOPS = NamedQuery(
    "compile_fix_loops",
    "Compile-fix loops",
    "Sessions with more than `threshold` compile errors (failed builds, failed compiler or "
    "build-tool runs) within any `window_minutes` sliding window.",
    f"""
SELECT
    session_id,
    agent,
    length(ts) AS compile_errors,
    arrayReduce('max', in_window) AS max_in_window,
    toDateTime(intDiv(arrayFirst((t, n) -> n > %(threshold)s, ts, in_window), 1000000))
        AS first_loop_at
FROM
(
    SELECT
        session_id,
        any(agent) AS agent,
        arrayMap(e -> tupleElement(e, 1), arraySort(groupUniqArray((ts_us, cityHash64(event_id))))) AS ts,
        arrayMap(t -> arrayCount(x -> x > t - %(window_minutes)s * 60000000 AND x <= t, ts), ts)
            AS in_window
    FROM telemetry_events
    WHERE {COMPILE_ERROR}
      AND {WINDOW}
    GROUP BY session_id
)
WHERE max_in_window > %(threshold)s
ORDER BY max_in_window DESC, session_id
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS,
     Param("threshold", "UInt32", "3", "more than this many compile errors ..."),
     Param("window_minutes", "UInt32", "5", "... within this many minutes"), LIMIT),
)

FLAKY_TESTS = NamedQuery(
    "flaky_tests",
    "Flaky tests",
    "Tests whose outcome alternated (pass, fail, pass or fail, pass, fail) over three "
    "consecutive runs in one session with no file.write or file.delete in between.",
    f"""
SELECT
    session_id,
    suite,
    test_name,
    sum(n_runs) AS runs,
    sum(n_passed) AS passed,
    sum(n_failed) AS failed,
    sum(n_flaky) AS flaky_sequences,
    toDateTime(intDiv(minIf(first_flaky_us, n_flaky > 0), 1000000)) AS first_flaky_at
FROM
(
    SELECT
        session_id, suite, test_name, epoch,
        arrayMap(r -> tupleElement(r, 2), arraySort(groupArray((ts_us, outcome)))) AS o,
        arrayMap(r -> tupleElement(r, 1), arraySort(groupArray((ts_us, outcome)))) AS t,
        arrayMap(
            (o0, o1, o2) -> o0 = o2 AND o0 != o1 AND o1 != '',
            o, arrayResize(arrayPopFront(o), length(o), ''),
            arrayResize(arrayPopFront(arrayPopFront(o)), length(o), '')) AS flaky,
        length(o) AS n_runs,
        countEqual(o, 'passed') AS n_passed,
        countEqual(o, 'failed') AS n_failed,
        arrayCount(x -> x, flaky) AS n_flaky,
        arrayFirst((x, f) -> f, t, flaky) AS first_flaky_us
    FROM
    ({_timeline("event_type = 'test.executed' AND test_outcome IN ('passed', 'failed')",
                "test_suite, test_name, test_outcome",
                "suite, test_name, outcome")})
    GROUP BY session_id, suite, test_name, epoch
)
GROUP BY session_id, suite, test_name
HAVING flaky_sequences > 0
ORDER BY flaky_sequences DESC, session_id, suite, test_name
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS, LIMIT),
)

MEMORY_GROWTH = NamedQuery(
    "memory_growth",
    "Memory growth across runs",
    "Commands (binary and arguments) whose peak memory rose more than `growth_pct` percent on "
    "each of `runs` consecutive runs in one session.",
    f"""
SELECT
    session_id,
    command,
    length(peaks) AS runs,
    peaks AS peaks_mib,
    toDateTime(intDiv(ts[arrayFirstIndex(x -> x, chain_starts)], 1000000)) AS first_chain_at
FROM
(
    SELECT
        session_id, command, ts, peaks,
        arrayMap(m -> toUInt8(m), arrayMap(
            (a, b) -> b > a * (1 + %(growth_pct)s / 100),
            peaks, arrayConcat(arrayPopFront(peaks), [0.]))) AS grows,
        arrayMap(
            i -> i + %(runs)s - 2 <= length(grows)
                AND arraySum(arraySlice(grows, i, %(runs)s - 1)) = %(runs)s - 1,
            arrayEnumerate(grows)) AS chain_starts
    FROM
    (
        SELECT
            session_id,
            {_COMMAND_KEY} AS command,
            arraySort(groupUniqArray((ts_us, cityHash64(event_id), assumeNotNull(peak_memory_mib))))
                AS runs_sorted,
            arrayMap(r -> tupleElement(r, 1), runs_sorted) AS ts,
            arrayMap(r -> tupleElement(r, 3), runs_sorted) AS peaks
        FROM telemetry_events
        WHERE event_type = 'command.executed' AND isNotNull(peak_memory_mib) AND {WINDOW}
        GROUP BY session_id, command
        HAVING length(peaks) >= %(runs)s
    )
)
WHERE arrayExists(x -> x, chain_starts)
ORDER BY first_chain_at, session_id, command
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS,
     Param("growth_pct", "Float64", "20", "minimum rise per run, in percent"),
     Param("runs", "UInt32", "3", "consecutive runs that must each grow (at least 2)"), LIMIT),
)

SLOW_TESTS = NamedQuery(
    "slow_tests",
    "Slow test runs",
    "Test runs that took more than `factor` times their suite's median duration over the "
    "window (suites with at least `min_samples` timed runs). The live detector compares with a "
    "running median of earlier runs instead.",
    f"""
SELECT
    session_id,
    test_suite AS suite,
    test_name,
    timestamp,
    duration_ms,
    suite_median_ms,
    round(duration_ms / suite_median_ms, 2) AS times_median
FROM
(
    SELECT session_id, test_suite, test_name, timestamp, duration_ms
    FROM telemetry_events
    WHERE event_type = 'test.executed' AND isNotNull(duration_ms) AND {WINDOW}
    LIMIT 1 BY event_id
)
ANY INNER JOIN
(
    SELECT test_suite, quantile(0.5)(duration_ms) AS suite_median_ms, count() AS samples
    FROM
    (
        SELECT test_suite, duration_ms
        FROM telemetry_events
        WHERE event_type = 'test.executed' AND isNotNull(duration_ms) AND {WINDOW}
        LIMIT 1 BY event_id
    )
    GROUP BY test_suite
    HAVING samples >= %(min_samples)s
) USING test_suite
WHERE duration_ms > %(factor)s * suite_median_ms
ORDER BY times_median DESC, timestamp, session_id, test_name
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS,
     Param("factor", "Float64", "2", "how many times the suite median counts as slow"),
     Param("min_samples", "UInt32", "5", "timed runs a suite needs before runs are judged"),
     LIMIT),
)

STALLED_SESSIONS = NamedQuery(
    "stalled_sessions",
    "Stalled sessions",
    "Gaps of more than `stall_minutes` between consecutive progress events (agent, file, "
    "command, test, build, llm, user events) of a session; a session without session.ended "
    "whose last progress is that old at `until` counts as stalled until then (ongoing = 1).",
    f"""
SELECT
    session_id,
    agent,
    length(arrayFilter(g -> g > %(stall_minutes)s * 60000000, gaps)) AS stalls,
    round(arrayReduce('max', gaps) / 60000000, 3) AS longest_gap_min,
    toDateTime(intDiv(ts[arrayFirstIndex(g -> g > %(stall_minutes)s * 60000000, gaps)],
                      1000000)) AS first_stall_at,
    toUInt8(gaps[length(gaps)] > %(stall_minutes)s * 60000000) AS ongoing
FROM
(
    SELECT
        session_id, agent, ts,
        -- gap i starts at ts[i]; the last one runs to `until` unless the session ended
        arrayPushBack(
            arrayMap((a, b) -> b - a, arrayPopBack(ts), arrayPopFront(ts)),
            if(ended, 0, toInt64(%(until)s) * 1000000 - ts[length(ts)])) AS gaps
    FROM
    (
        SELECT
            session_id,
            any(agent) AS agent,
            arraySort(groupUniqArrayIf(ts_us, {_PROGRESS})) AS ts,
            max(event_type = 'session.ended') AS ended
        FROM telemetry_events
        WHERE {WINDOW}
        GROUP BY session_id
        HAVING length(ts) > 0
    )
)
WHERE stalls > 0
ORDER BY longest_gap_min DESC, session_id
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS,
     Param("stall_minutes", "Float64", "5", "minutes without progress that count as a stall"),
     LIMIT),
)

RETRY_STORMS = NamedQuery(
    "retry_storms",
    "Retry storms",
    "Commands (binary and arguments) that failed `failures` or more times in a row in one "
    "session with no success of that command and no file.write or file.delete in between.",
    f"""
SELECT
    session_id,
    command,
    count() AS storms,
    max(streak) AS longest_streak,
    sum(streak) AS failures_in_storms,
    toDateTime(intDiv(min(streak_start_us), 1000000)) AS first_storm_at
FROM
(
    SELECT session_id, command, count() AS streak, min(ts_us) AS streak_start_us
    FROM
    (
        SELECT
            session_id, command, epoch,
            arrayMap(r -> tupleElement(r, 2), arraySort(groupArray((ts_us, failed)))) AS f,
            arrayMap(r -> tupleElement(r, 1), arraySort(groupArray((ts_us, failed)))) AS t,
            arrayCumSum(arrayMap(x -> 1 - x, f)) AS run_id
        FROM
        ({_timeline("event_type = 'command.executed' AND isNotNull(exit_code)",
                    f"{_COMMAND_KEY}, toUInt8(assumeNotNull(exit_code) != 0)",
                    "command, failed")})
        GROUP BY session_id, command, epoch
    )
    ARRAY JOIN f AS failed, t AS ts_us, run_id
    WHERE failed = 1
    GROUP BY session_id, command, epoch, run_id
    HAVING streak >= %(failures)s
)
GROUP BY session_id, command
ORDER BY longest_streak DESC, session_id, command
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS,
     Param("failures", "UInt32", "3", "failures in a row that make a storm"), LIMIT),
)

COST_SPIKES = NamedQuery(
    "cost_spikes",
    "Cost spikes",
    "Windows of `window_minutes` (aligned to the clock) in which a session's LLM spend, "
    "extrapolated to an hour, exceeded `usd_per_hour`. The live detector slides its window.",
    f"""
SELECT
    session_id,
    toDateTime(intDiv(bucket * %(window_minutes)s * 60000000, 1000000)) AS window_start,
    length(spend) AS requests,
    round(arraySum(s -> tupleElement(s, 3), spend), 6) AS cost_usd,
    round(cost_usd * 60 / %(window_minutes)s, 6) AS usd_per_hour
FROM
(
    SELECT
        session_id,
        intDiv(ts_us, %(window_minutes)s * 60000000) AS bucket,
        groupUniqArray((ts_us, cityHash64(event_id), ifNull(cost_usd, 0))) AS spend
    FROM telemetry_events
    WHERE event_type = 'llm.request' AND {WINDOW}
    GROUP BY session_id, bucket
)
WHERE usd_per_hour > %(usd_per_hour)s
ORDER BY usd_per_hour DESC, session_id, window_start
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS,
     Param("usd_per_hour", "Float64", "20", "spend rate that counts as a spike"),
     Param("window_minutes", "UInt32", "15", "window length"), LIMIT),
)

ALERTS_BY_PATTERN = NamedQuery(
    "alerts_by_pattern",
    "Pattern alerts raised",
    "The alerts the live detectors raised (pattern_alerts), per pattern: how many, in how many "
    "sessions and agents, and the latest; deduplicated on alert_id.",
    """
SELECT
    pattern,
    count() AS alerts,
    uniqExact(session_id) AS sessions,
    uniqExact(agent) AS agents,
    max(detected_at) AS last_detected
FROM
(
    SELECT pattern, session_id, agent, detected_at
    FROM pattern_alerts
    WHERE detected_at >= toDateTime(%(since)s) AND detected_at < toDateTime(%(until)s)
      AND (%(session)s = '' OR session_id = %(session)s)
    LIMIT 1 BY alert_id
)
GROUP BY pattern
ORDER BY alerts DESC, pattern
""",
    WINDOW_PARAMS,
)

PATTERNS: tuple[NamedQuery, ...] = (
    COMPILE_FIX_LOOPS,
    FLAKY_TESTS,
    MEMORY_GROWTH,
    SLOW_TESTS,
    STALLED_SESSIONS,
    RETRY_STORMS,
    COST_SPIKES,
    ALERTS_BY_PATTERN,
)
