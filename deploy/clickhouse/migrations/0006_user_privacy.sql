-- Per-user privacy preferences (issue 11): telemetry enabled | disabled (opt-out) | minimal, and
-- a retention override in days (0 = the deployment's rules). Collectors read it every few
-- seconds; the CLI and the gateway write it. Latest updated_us wins (read with argMax or FINAL).
CREATE TABLE IF NOT EXISTS {database}.user_privacy
(
    user_id String,
    telemetry LowCardinality(String),
    retention_days UInt32,
    updated_us Int64,
    updated_by String,
    updated_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(updated_us)
ORDER BY user_id;
