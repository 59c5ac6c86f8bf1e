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

def _timeline(target: str, key: str, flag: str) -> str:
    """Rows of ``target`` (session_id, ts_us, key, flag) numbered by ``epoch``: how many file
    changes of their session came before them.

    One sorted array per session of the target events and the file.write/file.delete events,
    deduplicated on (ts_us, event_id hash), then unrolled; a running count of file changes
    numbers the stretches in which the code did not change. Only numbers travel through the
    arrays (``key`` is a hash, names are joined back at the end): strings there cost seconds.
    """
    return f"""
    SELECT session_id, tupleElement(e, 1) AS ts_us, epoch,
           tupleElement(e, 4) AS key, tupleElement(e, 5) AS flag
    FROM
    (
        SELECT
            session_id,
            arraySort(groupUniqArray((ts_us, cityHash64(event_id),
                toUInt8(event_type IN ('file.write', 'file.delete')),
                {key}, toUInt8({flag})))) AS timeline,
            arrayCumSum(arrayMap(x -> tupleElement(x, 3), timeline)) AS epochs
        FROM telemetry_events
        WHERE (event_type IN ('file.write', 'file.delete') OR ({target}))
          AND {WINDOW}
        GROUP BY session_id
    )
    ARRAY JOIN timeline AS e, epochs AS epoch
    WHERE tupleElement(e, 3) = 0"""


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

_TEST_KEY = "cityHash64(test_suite, test_name)"

FLAKY_TESTS = NamedQuery(
    "flaky_tests",
    "Flaky tests",
    "Tests whose outcome alternated (pass, fail, pass or fail, pass, fail) over three "
    "consecutive runs in one session with no file.write or file.delete in between; "
    "`first_flaky_at` is the third run of the first such sequence (when the live detector "
    "alerts).",
    f"""
SELECT session_id, suite, name AS test_name, runs, passed, runs - passed AS failed,
       flaky_sequences, first_flaky_at
FROM
(
    SELECT
        session_id,
        key,
        arraySort(groupArray((ts_us, epoch, flag))) AS r,
        -- o: 1 passed, 0 failed; the shifted copies are padded with 2 (no run)
        arrayMap(x -> tupleElement(x, 3), r) AS o,
        arrayMap(x -> tupleElement(x, 2), r) AS e,
        arrayMap(
            (o0, o1, o2, e0, e2) -> o0 = o2 AND o0 != o1 AND o1 != 2 AND e0 = e2,
            o,
            arrayResize(arrayPopFront(o), length(o), 2),
            arrayResize(arrayPopFront(arrayPopFront(o)), length(o), 2),
            e,
            arrayResize(arrayPopFront(arrayPopFront(e)), length(o), e[length(e)] + 1)) AS flaky,
        length(o) AS runs,
        arraySum(o) AS passed,
        arrayCount(x -> x, flaky) AS flaky_sequences,
        toDateTime(intDiv(tupleElement(
            r[arrayFirstIndex(x -> x, flaky) + 2], 1), 1000000)) AS first_flaky_at
    FROM
    ({_timeline("event_type = 'test.executed' AND test_outcome IN ('passed', 'failed')",
                _TEST_KEY, "test_outcome = 'passed'")})
    GROUP BY session_id, key
    HAVING flaky_sequences > 0
)
ANY INNER JOIN
(
    SELECT {_TEST_KEY} AS key, any(test_suite) AS suite, any(test_name) AS name
    FROM telemetry_events
    WHERE event_type = 'test.executed' AND {WINDOW}
    GROUP BY key
) USING key
ORDER BY flaky_sequences DESC, session_id, suite, test_name
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS, LIMIT),
)

MEMORY_GROWTH = NamedQuery(
    "memory_growth",
    "Memory growth across runs",
    "Commands (binary and arguments) whose peak memory rose more than `growth_pct` percent on "
    "each of `runs` consecutive runs in one session; `first_growth_at` is the run that "
    "completed the first such chain (when the live detector alerts).",
    f"""
SELECT
    session_id,
    command,
    length(peaks) AS runs,
    peaks AS peaks_mib,
    toDateTime(intDiv(ts[arrayFirstIndex(x -> x, chain_starts) + %(runs)s - 1], 1000000))
        AS first_growth_at
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
ORDER BY first_growth_at, session_id, command
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
    tupleElement(slow, 1) AS session_id,
    suite,
    tupleElement(slow, 3) AS test_name,
    toDateTime(intDiv(tupleElement(slow, 2), 1000000)) AS timestamp,
    tupleElement(slow, 4) AS duration_ms,
    suite_median_ms,
    round(duration_ms / suite_median_ms, 2) AS times_median
FROM
(
    SELECT
        suite,
        quantileArray(0.5)(durations) AS suite_median_ms,
        sum(length(durations)) AS samples,
        groupArrayArray(tagged) AS all_runs
    FROM
    (
        SELECT
            test_suite AS suite,
            session_id,
            groupUniqArray((ts_us, cityHash64(event_id), test_name,
                            assumeNotNull(duration_ms))) AS runs,
            arrayMap(r -> tupleElement(r, 4), runs) AS durations,
            arrayMap(r -> (session_id, tupleElement(r, 1), tupleElement(r, 3),
                           tupleElement(r, 4)), runs) AS tagged
        FROM telemetry_events
        WHERE event_type = 'test.executed' AND isNotNull(duration_ms) AND {WINDOW}
        GROUP BY suite, session_id
    )
    GROUP BY suite
    HAVING samples >= %(min_samples)s
)
ARRAY JOIN arrayFilter(r -> tupleElement(r, 4) > %(factor)s * suite_median_ms, all_runs) AS slow
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

_COMMAND_HASH = "cityHash64(command_binary, command_args)"

RETRY_STORMS = NamedQuery(
    "retry_storms",
    "Retry storms",
    "Commands (binary and arguments) that failed `failures` or more times in a row in one "
    "session with no success of that command and no file.write or file.delete in between; "
    "`first_storm_at` is when the first storm reached `failures` (when the live detector "
    "alerts).",
    f"""
SELECT session_id, command, runs, failed, storms, longest_streak, first_storm_at
FROM
(
    SELECT
        session_id,
        key,
        arraySort(groupArray((ts_us, epoch, flag))) AS r,
        arrayMap(x -> tupleElement(x, 3), r) AS f,
        arrayMap(x -> tupleElement(x, 2), r) AS e,
        -- a new streak starts at every success and at every file change
        arrayCumSum(arrayMap((fail, e0, e1) -> fail = 0 OR e0 != e1,
                             f, e, arrayPushFront(arrayPopBack(e), e[1]))) AS streak_id,
        -- position of each failure within its streak (1, 2, 3, ...)
        arrayEnumerateUniq(arrayMap((s, fail) -> if(fail = 1, s + 1, 0), streak_id, f)) AS position,
        arrayMap((p, fail) -> p * fail, position, f) AS nth,
        length(f) AS runs,
        arraySum(f) AS failed,
        arrayCount(n -> n = %(failures)s, nth) AS storms,
        arrayReduce('max', nth) AS longest_streak,
        toDateTime(intDiv(tupleElement(
            r[arrayFirstIndex(n -> n = %(failures)s, nth)], 1), 1000000)) AS first_storm_at
    FROM
    ({_timeline("event_type = 'command.executed' AND isNotNull(exit_code)",
                _COMMAND_HASH, "assumeNotNull(exit_code) != 0")})
    GROUP BY session_id, key
    HAVING storms > 0
)
ANY INNER JOIN
(
    SELECT {_COMMAND_HASH} AS key, any({_COMMAND_KEY}) AS command
    FROM telemetry_events
    WHERE event_type = 'command.executed' AND {WINDOW}
    GROUP BY key
) USING key
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
