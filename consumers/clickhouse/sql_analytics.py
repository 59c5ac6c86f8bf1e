"""The design's analytics as named queries (durations, files, errors, builds, tests, code, cost).

Read-time dedup, cheapest first: aggregates a duplicate cannot change (min, max, argMax, the order
of outcomes); per session (small groups) ``uniqExact(event_id)`` for counts and
``groupUniqArray((ts_us, cityHash64(event_id), values...))`` for sums, which on ClickHouse 18.16
is 2-3x faster than one global set of ids (bench/queries.py); ``LIMIT 1 BY event_id`` where the
filter keeps a thin slice (builds). A false merge needs two events of one session in the same
microsecond with colliding 64-bit hashes.
"""

from __future__ import annotations

from consumers.clickhouse.querydefs import WINDOW, WINDOW_PARAMS, NamedQuery, Param

LIMIT = Param("limit", "UInt32", "20", "rows to return")
TEST_OK = "('passed')"
TEST_BAD = "('failed', 'errored')"
# Same prices as the cost widget (processors/widgets/reducers.py): on-demand cloud CPU-hours
# and GiB-hours.
CPU_HOUR_USD = Param("cpu_hour_usd", "Float64", "0.04", "price of one CPU-hour in USD")
GIB_HOUR_USD = Param("gib_hour_usd", "Float64", "0.005", "price of one GiB-hour of memory in USD")

SESSION_DURATION_BY_AGENT = NamedQuery(
    "session_duration_by_agent",
    "Session duration by agent",
    "For each agent, how long it was active per session: from its first to its last event in "
    "the session (the main agent's span is the session's). Durations in seconds; min/max of "
    "timestamps, so duplicates do not matter.",
    f"""
SELECT
    agent,
    count() AS sessions,
    round(avg(span_s), 3) AS avg_duration_s,
    round(quantile(0.5)(span_s), 3) AS median_duration_s,
    round(max(span_s), 3) AS max_duration_s,
    round(sum(span_s), 3) AS total_duration_s
FROM
(
    SELECT agent, session_id, (max(ts_us) - min(ts_us)) / 1000000 AS span_s
    FROM telemetry_events
    WHERE {WINDOW}
    GROUP BY agent, session_id
)
GROUP BY agent
ORDER BY total_duration_s DESC, agent
""",
    WINDOW_PARAMS,
)

MOST_MODIFIED_FILES = NamedQuery(
    "most_modified_files",
    "Most modified files",
    "Files by number of modifications (file.write and file.delete events), with the lines "
    "added and removed, the sessions that touched them and the last change.",
    f"""
SELECT
    file_path,
    sum(n) AS modifications,
    sum(arraySum(e -> tupleElement(e, 3), ev)) AS deletes,
    sum(arraySum(e -> tupleElement(e, 4), ev)) AS lines_added,
    sum(arraySum(e -> tupleElement(e, 5), ev)) AS lines_removed,
    count() AS sessions,
    max(last) AS last_modified
FROM
(
    SELECT
        file_path,
        session_id,
        groupUniqArray((ts_us, cityHash64(event_id), toUInt8(event_type = 'file.delete'),
                        ifNull(lines_added, 0), ifNull(lines_removed, 0))) AS ev,
        length(ev) AS n,
        max(timestamp) AS last
    FROM telemetry_events
    WHERE event_type IN ('file.write', 'file.delete') AND file_path != ''
      AND {WINDOW}
    GROUP BY file_path, session_id
)
GROUP BY file_path
ORDER BY modifications DESC, file_path
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS, LIMIT),
)

ERROR_RATE_BY_AGENT = NamedQuery(
    "error_rate_by_agent",
    "Error rate by agent",
    "Share of each agent's events with severity error or critical (failed tasks, failed "
    "builds, ...); warnings (failed tests, non-zero exits) are counted separately.",
    f"""
SELECT
    agent,
    sum(n_events) AS events,
    sum(n_errors) AS errors,
    sum(n_warnings) AS warnings,
    round(errors / events, 6) AS error_rate
FROM
(
    SELECT
        agent,
        session_id,
        uniqExact(event_id) AS n_events,
        uniqExactIf(event_id, severity IN ('error', 'critical')) AS n_errors,
        uniqExactIf(event_id, severity = 'warning') AS n_warnings
    FROM telemetry_events
    WHERE {WINDOW}
    GROUP BY agent, session_id
)
GROUP BY agent
ORDER BY error_rate DESC, agent
""",
    WINDOW_PARAMS,
)

_COMPONENT = Param("component", "String", "", "one build component, or empty for all")

BUILD_PERFORMANCE_TREND = NamedQuery(
    "build_performance_trend",
    "Build performance trend",
    "Per hour: builds, failures and the p50/p95/p99 of build duration (build.completed events; "
    "builds without a duration count as builds but not in the percentiles).",
    f"""
SELECT
    toStartOfHour(timestamp) AS hour,
    count() AS builds,
    countIf(build_outcome = 'failure') AS failures,
    round((quantiles(0.5, 0.95, 0.99)(duration_ms) AS q)[1], 1) AS p50_ms,
    round(q[2], 1) AS p95_ms,
    round(q[3], 1) AS p99_ms,
    max(duration_ms) AS max_ms
FROM
(
    SELECT timestamp, build_outcome, duration_ms
    FROM telemetry_events
    WHERE event_type = 'build.completed'
      AND (%(component)s = '' OR build_component = %(component)s)
      AND {WINDOW}
    LIMIT 1 BY event_id
)
GROUP BY hour
ORDER BY hour
""",
    (*WINDOW_PARAMS, _COMPONENT),
)

BUILD_TIME_BY_COMPONENT = NamedQuery(
    "build_time_by_component",
    "Build time by component",
    "Per build component: builds, failures, failure rate, and duration statistics in ms.",
    f"""
SELECT
    build_component AS component,
    count() AS builds,
    countIf(build_outcome = 'failure') AS failures,
    round(failures / builds, 6) AS failure_rate,
    round(avg(duration_ms), 1) AS avg_ms,
    round(quantile(0.5)(duration_ms), 1) AS p50_ms,
    round(quantile(0.95)(duration_ms), 1) AS p95_ms,
    max(duration_ms) AS max_ms,
    sum(duration_ms) AS total_ms
FROM
(
    SELECT build_component, build_outcome, duration_ms
    FROM telemetry_events
    WHERE event_type = 'build.completed' AND {WINDOW}
    LIMIT 1 BY event_id
)
GROUP BY component
ORDER BY total_ms DESC, component
""",
    WINDOW_PARAMS,
)

TEST_SUCCESS_RATE_BY_SUITE = NamedQuery(
    "test_success_rate_by_suite",
    "Test success rate by suite",
    "Per test suite: runs by outcome and the success rate passed / (passed + failed + errored); "
    "skipped and unknown outcomes count as runs only.",
    f"""
SELECT
    suite,
    sum(n_runs) AS runs,
    sum(n_passed) AS passed,
    sum(n_failed) AS failed,
    sum(n_errored) AS errored,
    sum(n_skipped) AS skipped,
    uniqExactMerge(names) AS tests,
    if(passed + failed + errored = 0, NULL,
       round(passed / (passed + failed + errored), 6)) AS success_rate
FROM
(
    SELECT
        test_suite AS suite,
        session_id,
        uniqExact(event_id) AS n_runs,
        uniqExactIf(event_id, test_outcome = 'passed') AS n_passed,
        uniqExactIf(event_id, test_outcome = 'failed') AS n_failed,
        uniqExactIf(event_id, test_outcome = 'errored') AS n_errored,
        uniqExactIf(event_id, test_outcome = 'skipped') AS n_skipped,
        uniqExactState(test_name) AS names
    FROM telemetry_events
    WHERE event_type = 'test.executed' AND {WINDOW}
    GROUP BY suite, session_id
)
GROUP BY suite
ORDER BY success_rate, suite
""",
    WINDOW_PARAMS,
)

COVERAGE_TRAJECTORY = NamedQuery(
    "coverage_trajectory",
    "Coverage trajectory",
    "Per session and hour: the last reported coverage (test.executed events with coverage_pct) "
    "and the hour's low and high; one session's line is its trajectory (--session).",
    f"""
SELECT
    session_id,
    toStartOfHour(timestamp) AS hour,
    round(argMax(coverage_pct, (ts_us, event_id)), 3) AS last_pct,
    round(min(coverage_pct), 3) AS min_pct,
    round(max(coverage_pct), 3) AS max_pct,
    uniqExact(event_id) AS reports
FROM telemetry_events
WHERE event_type = 'test.executed' AND isNotNull(coverage_pct) AND {WINDOW}
GROUP BY session_id, hour
ORDER BY session_id, hour
""",
    WINDOW_PARAMS,
)

LINES_OF_CODE_PER_HOUR = NamedQuery(
    "lines_of_code_per_hour",
    "Lines of code per hour per agent",
    "Per hour and agent: lines added and removed by file.write events, the net change, the "
    "writes and the distinct files written.",
    f"""
SELECT
    hour,
    agent,
    sum(arraySum(e -> tupleElement(e, 3), ev)) AS lines_added,
    sum(arraySum(e -> tupleElement(e, 4), ev)) AS lines_removed,
    lines_added - lines_removed AS net_lines,
    sum(length(ev)) AS writes,
    uniqExactMerge(paths) AS files
FROM
(
    SELECT
        toStartOfHour(timestamp) AS hour,
        agent,
        session_id,
        groupUniqArray((ts_us, cityHash64(event_id), ifNull(lines_added, 0),
                        ifNull(lines_removed, 0))) AS ev,
        uniqExactState(file_path) AS paths
    FROM telemetry_events
    WHERE event_type = 'file.write' AND {WINDOW}
    GROUP BY hour, agent, session_id
)
GROUP BY hour, agent
ORDER BY hour, agent
""",
    WINDOW_PARAMS,
)

ISSUES_FIXED_PER_HOUR = NamedQuery(
    "issues_fixed_per_hour",
    "Issues fixed per hour",
    "An issue is fixed when, in one session, a test (suite and name) that failed or errored "
    "next passes, or a build component that failed next succeeds; counted in the hour of the "
    "fix. Only runs inside the window are considered. Duplicates repeat an outcome and never "
    "add a fail-to-pass step.",
    f"""
SELECT
    toStartOfHour(toDateTime(intDiv(fixed_us, 1000000))) AS hour,
    count() AS issues_fixed,
    countIf(kind = 'test') AS tests_fixed,
    countIf(kind = 'build') AS builds_fixed
FROM
(
    SELECT kind, arrayJoin(arrayFilter(
        (t, ok, prev_ok) -> ok = 1 AND prev_ok = 0,
        arraySort(groupArray(ts_us)),
        arraySort((o, t) -> t, groupArray(ok), groupArray(ts_us)),
        arrayPushFront(arrayPopBack(arraySort((o, t) -> t, groupArray(ok), groupArray(ts_us))), 1)
    )) AS fixed_us
    FROM
    (
        SELECT
            session_id,
            if(event_type = 'test.executed', 'test', 'build') AS kind,
            if(event_type = 'test.executed', concat(test_suite, '::', test_name),
               build_component) AS item,
            ts_us,
            toUInt8(test_outcome IN {TEST_OK} OR build_outcome = 'success') AS ok
        FROM telemetry_events
        WHERE ((event_type = 'test.executed' AND test_outcome IN ('passed', 'failed', 'errored'))
               OR (event_type = 'build.completed' AND build_outcome IN ('success', 'failure')))
          AND {WINDOW}
    )
    GROUP BY session_id, kind, item
)
GROUP BY hour
ORDER BY hour
""",
    WINDOW_PARAMS,
)

SESSION_COST_RESOURCES = NamedQuery(
    "session_cost_resources",
    "Session cost, resource-based",
    "Per session, the design's resource estimate from command.executed events: CPU-hours "
    "(cpu_time_ms) and GiB-hours (peak_memory_mib x duration_ms) at the given prices, the same "
    "formula as the dashboard's cost widget.",
    f"""
SELECT
    session_id,
    agent,
    length(ev) AS commands,
    round((arraySum(e -> tupleElement(e, 3), ev) / 3600000 AS cpu_h), 6) AS cpu_hours,
    round((arraySum(e -> tupleElement(e, 4), ev) / 1024 / 3600000 AS gib_h), 6) AS gib_hours,
    round(cpu_h * %(cpu_hour_usd)s + gib_h * %(gib_hour_usd)s, 6) AS cost_usd
FROM
(
    SELECT
        session_id,
        any(agent) AS agent,
        groupUniqArray((ts_us, cityHash64(event_id), ifNull(cpu_time_ms, 0),
                        ifNull(peak_memory_mib, 0) * ifNull(duration_ms, 0))) AS ev
    FROM telemetry_events
    WHERE event_type = 'command.executed' AND {WINDOW}
    GROUP BY session_id
)
ORDER BY cost_usd DESC, session_id
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS, CPU_HOUR_USD, GIB_HOUR_USD, LIMIT),
)

SESSION_COST_TOKENS = NamedQuery(
    "session_cost_tokens",
    "Session cost, token-based per model",
    "Per session and model: LLM requests, tokens by type and the cost in USD reported with each "
    "llm.request (requests without a cost count as 0).",
    f"""
SELECT
    session_id,
    model,
    length(ev) AS requests,
    arraySum(e -> tupleElement(e, 3), ev) AS input_tokens,
    arraySum(e -> tupleElement(e, 4), ev) AS output_tokens,
    arraySum(e -> tupleElement(e, 5), ev) AS cache_read_tokens,
    arraySum(e -> tupleElement(e, 6), ev) AS cache_creation_tokens,
    round(arraySum(e -> tupleElement(e, 7), ev), 6) AS cost_usd
FROM
(
    SELECT
        session_id,
        model,
        groupUniqArray((ts_us, cityHash64(event_id), input_tokens, output_tokens,
                        cache_read_tokens, cache_creation_tokens, ifNull(cost_usd, 0))) AS ev
    FROM telemetry_events
    WHERE event_type = 'llm.request' AND {WINDOW}
    GROUP BY session_id, model
)
ORDER BY cost_usd DESC, session_id, model
LIMIT %(limit)s
""",
    (*WINDOW_PARAMS, LIMIT),
)

ANALYTICS: tuple[NamedQuery, ...] = (
    SESSION_DURATION_BY_AGENT,
    MOST_MODIFIED_FILES,
    ERROR_RATE_BY_AGENT,
    BUILD_PERFORMANCE_TREND,
    BUILD_TIME_BY_COMPONENT,
    TEST_SUCCESS_RATE_BY_SUITE,
    COVERAGE_TRAJECTORY,
    LINES_OF_CODE_PER_HOUR,
    ISSUES_FIXED_PER_HOUR,
    SESSION_COST_RESOURCES,
    SESSION_COST_TOKENS,
)
