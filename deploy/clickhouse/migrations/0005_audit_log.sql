-- Who read, exported or deleted which session's telemetry: one row per access, written by the
-- gateway (dashboard views, REST reads, exports, deletes). Runs on ClickHouse 18.16 (no TTL:
-- retention drops month partitions). action: telemetry.accessed | telemetry.exported |
-- telemetry.deleted; access_type says through what (dashboard_view, rest_read, search, ...).
CREATE TABLE IF NOT EXISTS {database}.audit_log
(
    at DateTime,
    at_us Int64,
    action LowCardinality(String),
    access_type LowCardinality(String),
    user_id String,
    role LowCardinality(String),
    session_id String,
    resource String,
    client_addr String,
    user_agent String,
    status UInt16,
    gateway String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, user_id, session_id);
