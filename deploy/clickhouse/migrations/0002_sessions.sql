-- One row per session, latest state wins (ReplacingMergeTree on version): read with FINAL or
-- argMax(col, version). The ClickHouse sink folds each batch of events into the sessions it
-- touches and inserts the new state before the events themselves; kafka_* is the last event
-- folded, so a replayed batch is never counted twice. Not partitioned: a row must meet its
-- newer versions to be replaced, whatever its dates.
CREATE TABLE IF NOT EXISTS {database}.sessions
(
    session_id String,
    agent LowCardinality(String),
    source LowCardinality(String),
    status LowCardinality(String),
    started_at DateTime,
    started_us Int64,
    last_event_at DateTime,
    last_event_us Int64,
    ended_us Nullable(Int64),
    end_reason String,
    cwd String,
    model LowCardinality(String),
    permission_mode LowCardinality(String),
    transcript_path String,
    events UInt64,
    errors UInt64,
    warnings UInt64,
    files_written UInt64,
    lines_added UInt64,
    lines_removed UInt64,
    commands UInt64,
    commands_failed UInt64,
    tests_passed UInt64,
    tests_failed UInt64,
    builds UInt64,
    builds_failed UInt64,
    llm_requests UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_creation_tokens UInt64,
    cost_usd Float64,
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64,
    version UInt64,
    updated_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
ORDER BY session_id;
