-- Hourly rollups kept by materialized views so the named queries read a few rows per hour
-- instead of scanning telemetry_events. They are exact because the sink never inserts a Kafka
-- record twice (sink_offsets); an upstream duplicate event_id is counted twice here until
-- compared with telemetry_events FINAL. Read AggregatingMergeTree columns with -Merge
-- (countMerge(builds), quantilesMerge(0.5, 0.9, 0.99)(duration_ms_quantiles)) and
-- SummingMergeTree columns with sum() ... GROUP BY. Types in each SELECT match the target
-- exactly: 18.16 does not convert when pushing to a view.
-- Duration rollups cover events that carry a duration; all events are in events_hourly.

CREATE TABLE IF NOT EXISTS {database}.events_hourly
(
    hour DateTime,
    agent LowCardinality(String),
    event_type LowCardinality(String),
    severity LowCardinality(String),
    events UInt64
)
ENGINE = SummingMergeTree((events))
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, agent, event_type, severity);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.events_hourly_mv
TO {database}.events_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    agent,
    event_type,
    severity,
    count() AS events
FROM {database}.telemetry_events
GROUP BY hour, agent, event_type, severity;

CREATE TABLE IF NOT EXISTS {database}.build_durations_hourly
(
    hour DateTime,
    build_component LowCardinality(String),
    build_outcome LowCardinality(String),
    builds AggregateFunction(count),
    duration_ms_sum AggregateFunction(sum, Int64),
    duration_ms_max AggregateFunction(max, Int64),
    duration_ms_quantiles AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, build_component, build_outcome);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.build_durations_hourly_mv
TO {database}.build_durations_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    build_component,
    build_outcome,
    countState() AS builds,
    sumState(assumeNotNull(duration_ms)) AS duration_ms_sum,
    maxState(assumeNotNull(duration_ms)) AS duration_ms_max,
    quantilesState(0.5, 0.9, 0.99)(assumeNotNull(duration_ms)) AS duration_ms_quantiles
FROM {database}.telemetry_events
WHERE event_type = 'build.completed' AND isNotNull(duration_ms)
GROUP BY hour, build_component, build_outcome;

CREATE TABLE IF NOT EXISTS {database}.test_durations_hourly
(
    hour DateTime,
    test_suite String,
    test_outcome LowCardinality(String),
    tests AggregateFunction(count),
    duration_ms_sum AggregateFunction(sum, Int64),
    duration_ms_max AggregateFunction(max, Int64),
    duration_ms_quantiles AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, test_suite, test_outcome);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.test_durations_hourly_mv
TO {database}.test_durations_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    test_suite,
    test_outcome,
    countState() AS tests,
    sumState(assumeNotNull(duration_ms)) AS duration_ms_sum,
    maxState(assumeNotNull(duration_ms)) AS duration_ms_max,
    quantilesState(0.5, 0.9, 0.99)(assumeNotNull(duration_ms)) AS duration_ms_quantiles
FROM {database}.telemetry_events
WHERE event_type = 'test.executed' AND isNotNull(duration_ms)
GROUP BY hour, test_suite, test_outcome;

CREATE TABLE IF NOT EXISTS {database}.command_durations_hourly
(
    hour DateTime,
    command_binary LowCardinality(String),
    failed UInt8,
    runs AggregateFunction(count),
    duration_ms_sum AggregateFunction(sum, Int64),
    duration_ms_max AggregateFunction(max, Int64),
    duration_ms_quantiles AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, command_binary, failed);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.command_durations_hourly_mv
TO {database}.command_durations_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    command_binary,
    toUInt8(ifNull(exit_code, 0) != 0) AS failed,
    countState() AS runs,
    sumState(assumeNotNull(duration_ms)) AS duration_ms_sum,
    maxState(assumeNotNull(duration_ms)) AS duration_ms_max,
    quantilesState(0.5, 0.9, 0.99)(assumeNotNull(duration_ms)) AS duration_ms_quantiles
FROM {database}.telemetry_events
WHERE event_type = 'command.executed' AND isNotNull(duration_ms)
GROUP BY hour, command_binary, failed;

CREATE TABLE IF NOT EXISTS {database}.llm_usage_hourly
(
    hour DateTime,
    agent LowCardinality(String),
    model LowCardinality(String),
    requests UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_creation_tokens UInt64,
    cost_usd Float64
)
ENGINE = SummingMergeTree((requests, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd))
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, agent, model);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.llm_usage_hourly_mv
TO {database}.llm_usage_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    agent,
    model,
    count() AS requests,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(ifNull(cost_usd, 0.)) AS cost_usd
FROM {database}.telemetry_events
WHERE event_type = 'llm.request'
GROUP BY hour, agent, model;
