-- Failure patterns from agent.telemetry.patterns. alert_id is deterministic per
-- (pattern, session, window), so a replayed detection has the same sorting key and is folded
-- by the replacing engine; partitioned by the window's day so both copies meet.
CREATE TABLE IF NOT EXISTS {database}.pattern_alerts
(
    detected_at DateTime,
    detected_us Int64,
    alert_id String,
    pattern LowCardinality(String),
    session_id String,
    agent LowCardinality(String),
    severity LowCardinality(String),
    window_start DateTime,
    window_start_us Int64,
    window_end_us Int64,
    evidence_event_ids Array(String),
    message String,
    suggested_mitigation String,
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64,
    inserted_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (session_id, pattern, window_start_us, alert_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.pattern_alerts_offsets_mv
TO {database}.sink_offsets
AS SELECT
    'pattern_alerts' AS target,
    kafka_topic,
    kafka_partition,
    max(kafka_offset) + 1 AS next_offset
FROM {database}.pattern_alerts
GROUP BY kafka_topic, kafka_partition;

-- Dead letters from agent.telemetry.dlq. Writers redact original_text/original_bytes before
-- producing (see avro/dead_letter.avsc), so nothing here holds an unredacted secret.
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    first_seen DateTime,
    first_seen_us Int64,
    stage LowCardinality(String),
    error_kind LowCardinality(String),
    error_message String,
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    attempts UInt32,
    session_id String,
    event_id String,
    original_text String,
    original_bytes String,
    original_truncated UInt8,
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64,
    inserted_at DateTime DEFAULT now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(first_seen)
ORDER BY (first_seen, source_topic, source_partition, source_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.dead_letters_offsets_mv
TO {database}.sink_offsets
AS SELECT
    'dead_letters' AS target,
    kafka_topic,
    kafka_partition,
    max(kafka_offset) + 1 AS next_offset
FROM {database}.dead_letters
GROUP BY kafka_topic, kafka_partition;
