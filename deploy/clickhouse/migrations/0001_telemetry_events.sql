-- One row per telemetry event from agent.telemetry.events (already redacted by the processor).
-- Runs on ClickHouse 18.16 and current servers: no DateTime64 (microseconds live in ts_us),
-- no TTL (retention drops day partitions), no codecs. LowCardinality needs
-- allow_experimental_low_cardinality_type=1 on 18.16; the migration runner passes it.
--
-- ReplacingMergeTree on the sorting key (session_id, timestamp, event_id): the sink's staged
-- offsets (sink_offsets below) already keep a replay from inserting a row twice; the replacing
-- engine additionally folds upstream duplicates (a producer re-sending the same event_id) when
-- parts merge. Queries that must be exact even for upstream duplicates use FINAL or
-- uniqExact(event_id). Partitioned by day so retention can drop whole days.
CREATE TABLE IF NOT EXISTS {database}.telemetry_events
(
    timestamp DateTime,
    ts_us Int64,
    event_id String,
    session_id String,
    event_type LowCardinality(String),
    agent LowCardinality(String),
    source LowCardinality(String),
    severity LowCardinality(String),
    task_id String,
    prompt_id String,
    tool_use_id String,
    trace_id String,
    span_id String,
    schema_version UInt16,
    payload_type LowCardinality(String),
    file_path String,
    file_size_bytes Nullable(Int64),
    lines_added Nullable(Int32),
    lines_removed Nullable(Int32),
    command_binary LowCardinality(String),
    command_args Array(String),
    exit_code Nullable(Int32),
    duration_ms Nullable(Int64),
    cpu_time_ms Nullable(Int64),
    peak_memory_mib Nullable(Float64),
    test_suite String,
    test_name String,
    test_outcome LowCardinality(String),
    coverage_pct Nullable(Float64),
    build_component LowCardinality(String),
    build_type LowCardinality(String),
    build_outcome LowCardinality(String),
    network_protocol LowCardinality(String),
    network_domain String,
    network_endpoint String,
    status_code Nullable(Int32),
    bytes_sent Nullable(Int64),
    bytes_received Nullable(Int64),
    model LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_creation_tokens UInt64,
    cost_usd Nullable(Float64),
    request_id String,
    memory_mib Nullable(Float64),
    cpu_pct Nullable(Float64),
    error_type LowCardinality(String),
    error_message String,
    metadata String,
    payload String,
    redacted_fields Array(String),
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64,
    inserted_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (session_id, timestamp, event_id)
SETTINGS index_granularity = 8192;

-- Exactly-once loading: every insert's highest Kafka offset per partition lands here through a
-- materialized view, in the same INSERT statement as the rows, so "rows written" and "offset
-- recorded" cannot disagree when the sink dies. On partition assignment the sink seeks to
-- max(next_offset) when it is ahead of the committed Kafka offset.
CREATE TABLE IF NOT EXISTS {database}.sink_offsets
(
    target String,
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    next_offset UInt64
)
ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (target, kafka_topic, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.telemetry_events_offsets_mv
TO {database}.sink_offsets
AS SELECT
    'telemetry_events' AS target,
    kafka_topic,
    kafka_partition,
    max(kafka_offset) + 1 AS next_offset
FROM {database}.telemetry_events
GROUP BY kafka_topic, kafka_partition;
