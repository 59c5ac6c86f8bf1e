"""One typed settings object for every agentwatch component.

Values come, highest priority first, from keyword arguments, ``AGENTWATCH_*`` environment
variables (nested sections joined by ``__``, e.g. ``AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS``),
an optional TOML file (``AGENTWATCH_CONFIG`` or ``./agentwatch.toml``), then the embedded
defaults of the local stack. Nothing else in the tree hard-codes a host or a port.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.redaction.config import RedactionSettings
from pipeline.schemas import SerdeSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the package was installed from (editable install); holds ``avro/`` and ``deploy/``."""


class _Section(BaseModel):
    # Pydantic parses booleans from text strictly ("0"/"false"/"off" are False, "maybe" is an
    # error), never with bool(str). Attribute docstrings become the documented descriptions.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of brokers."""
    client_id: str = "agentwatch"
    """Kafka client id prefix (shows in broker logs and quotas)."""
    security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: str | None = None
    """PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 when SASL is used."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: SecretStr | None = None
    """SASL password."""

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties shared by every confluent-kafka client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


class TopicSettings(_Section):
    ingest: str = "agent.telemetry.ingest"
    """Raw events from producers (unredacted)."""
    events: str = "agent.telemetry.events"
    """Validated, redacted events: what every sink reads."""
    widgets: str = "agent.telemetry.widgets"
    """Aggregated dashboard widget state (compacted)."""
    patterns: str = "agent.telemetry.patterns"
    """Failure-pattern alerts."""
    dlq: str = "agent.telemetry.dlq"
    """Dead letters: items that could not be processed, with the reason (redacted)."""
    replay: str = "agent.telemetry.replay"
    """Replayed sessions (marked metadata replay=1); live aggregates and ClickHouse never read it."""
    partitions: int = Field(default=6, ge=1)
    """Partitions per topic when `agentwatch up` creates them; the unit of scale-out."""
    replication_factor: int = Field(default=1, ge=1)
    """Replicas per partition (3 on the 3-broker stack)."""
    min_insync_replicas: int = Field(default=1, ge=1)
    """Replicas that must acknowledge an acks=all write (2 on the 3-broker stack)."""
    ingest_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    """Retention of the raw ingest topic: bounds how long unredacted data lives in Kafka."""
    events_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    """Retention of the events topic."""
    dlq_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=-1)
    """Retention of the dead-letter topic."""


class ClickHouseSettings(_Section):
    host: str = "127.0.0.1"
    """ClickHouse server host."""
    port: int = Field(default=9000, ge=1, le=65535)
    """Native protocol port (clickhouse-driver)."""
    http_port: int = Field(default=8123, ge=1, le=65535)
    """HTTP port (health checks; the local stack's server listens here too)."""
    database: str = "agentwatch"
    """Database holding agentwatch's tables."""
    user: str = "default"
    """ClickHouse user."""
    password: SecretStr = SecretStr("")
    """ClickHouse password."""


class ClickHouseSinkSettings(_Section):
    """The ClickHouse sink (`agentwatch sink clickhouse`): Kafka topics -> ClickHouse tables."""

    group_id: str = "agentwatch-clickhouse-sink"
    """Kafka consumer group of the events loader (patterns and DLQ loaders add -patterns, -dlq)."""
    batch_max_records: int = Field(default=50_000, ge=1)
    """Flush to ClickHouse when this many messages are buffered (bench/clickhouse_sink.py:
    larger inserts amortise the per-insert parts of the table and its views)."""
    batch_max_age_s: float = Field(default=1.0, gt=0)
    """Flush when the oldest buffered message has waited this long."""
    poll_timeout_s: float = Field(default=0.2, gt=0)
    """Longest a Kafka poll blocks (bounds how fast SIGTERM and retries are noticed)."""
    load_patterns: bool = True
    """Also load agent.telemetry.patterns into pattern_alerts."""
    load_dead_letters: bool = True
    """Also load agent.telemetry.dlq into dead_letters."""
    retry_initial_s: float = Field(default=0.5, gt=0)
    """First wait after a failed insert; doubles (with jitter) up to retry_max_s, forever."""
    retry_max_s: float = Field(default=30.0, gt=0)
    """Longest wait between insert attempts while ClickHouse is down."""
    insert_timeout_s: float = Field(default=60.0, gt=0)
    """Send/receive timeout of one ClickHouse call; keep it far below max.poll.interval.ms."""
    shutdown_timeout_s: float = Field(default=20.0, ge=0)
    """On SIGTERM, how long the last flush is retried before exiting without committing it."""
    session_timeout_s: float = Field(default=30.0, ge=6, le=300)
    """Kafka group session timeout: how soon a killed sink's partitions move to a live one."""
    unassigned_timeout_s: float = Field(default=0.0, ge=0)
    """A loader out of its Kafka group this long while Kafka answers and its topic has partitions
    reports unhealthy (reason not_in_group); 0 = session_timeout_s."""
    rejoin_timeout_s: float = Field(default=0.0, ge=0)
    """...and after this long it replaces its Kafka consumer with a fresh one; 0 = twice the
    unassigned timeout."""


class RetentionSettings(_Section):
    """How long ClickHouse keeps rows; `agentwatch retention apply` enforces it. 0 = forever."""

    debug_days: int = Field(default=7, ge=0)
    """Events (and pattern alerts) of severity debug."""
    info_days: int = Field(default=30, ge=0)
    """Severity info (also any severity not in this list)."""
    warning_days: int = Field(default=90, ge=0)
    """Severity warning."""
    error_days: int = Field(default=365, ge=0)
    """Severity error."""
    critical_days: int = Field(default=0, ge=0)
    """Severity critical (0: kept indefinitely)."""
    user_days: dict[str, int] = Field(default_factory=dict)
    """Per-user override, JSON {"user": days}: replaces the severity rules for that user's
    events (0 keeps them forever)."""
    user_key: str = Field(default="user_id", pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    """Event metadata key that names the user (events carry no user column yet)."""
    dead_letter_days: int = Field(default=30, ge=0)
    """Dead letters (same as the DLQ topic's retention)."""
    session_days: int = Field(default=365, ge=0)
    """Session rows, counted from the session's last event."""
    rollup_days: int = Field(default=0, ge=0)
    """Hourly rollup tables (aggregates without event content); whole months are dropped."""
    mutation_timeout_s: float = Field(default=300.0, gt=0)
    """How long `retention apply` waits for ClickHouse to finish each row deletion."""


class S3Settings(_Section):
    endpoint_url: str | None = "http://127.0.0.1:5000"
    """S3 API endpoint; empty/None means AWS itself."""
    region: str = "us-east-1"
    """S3 region."""
    access_key_id: SecretStr = SecretStr("agentwatch")
    """S3 access key id."""
    secret_access_key: SecretStr = SecretStr("agentwatch")
    """S3 secret access key."""


class ArchiveSettings(_Section):
    target: str = ""
    """Where recordings go: s3://bucket/prefix (S3 section's endpoint) or file:///path;
    empty means <stack dir>/archive, which survives restarts."""
    segment_max_age_s: float = Field(default=30.0, gt=0)
    """Longest a batch waits before its events are written as segment objects (one per session)."""
    segment_max_events: int = Field(default=20_000, ge=1)
    """Most events in one batch of segments."""
    write_concurrency: int = Field(default=8, ge=1, le=64)
    """Segment objects written in parallel per batch (hides S3 request latency)."""
    idle_timeout_s: float = Field(default=30 * 60.0, gt=0)
    """A session without session.ended is compacted into its recording after this long idle."""
    idle_check_interval_s: float = Field(default=30.0, gt=0)
    """How often the sink looks for idle sessions."""
    compress_level: int = Field(default=6, ge=1, le=9)
    """gzip level of recordings (short-lived segments always use the fastest level, 1)."""
    consumer_group: str = "agentwatch-archive"
    """Kafka consumer group of the archive sink."""
    session_timeout_ms: int = Field(default=30_000, ge=6_000)
    """Kafka group session timeout: how long a crashed sink holds its partitions."""
    unassigned_timeout_s: float = Field(default=0.0, ge=0)
    """Out of its Kafka group this long while Kafka answers and the events topic has partitions:
    unhealthy (reason not_in_group), and after twice as long the consumer is replaced by a fresh
    one; 0 = the session timeout."""
    sse: Literal["", "AES256", "aws:kms"] = ""
    """S3 server-side encryption: empty = bucket default, AES256 = SSE-S3, aws:kms = SSE-KMS."""
    sse_kms_key_id: str | None = None
    """KMS key id or ARN for aws:kms (empty = the account's default S3 key)."""
    multipart_threshold_bytes: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    """S3 objects larger than this are uploaded in parts."""
    multipart_part_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    """Size of each multipart part (S3's minimum is 5 MiB)."""
    create_bucket: bool = False
    """Create the S3 bucket at start if missing (local stacks and tests)."""

    def resolved_target(self, stack_dir: Path) -> str:
        return self.target or (stack_dir / "archive").as_uri()


class HttpServiceSettings(_Section):
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = Field(ge=0, le=65535)
    """Port to listen on (health, metrics and the component's own HTTP API)."""



# One subclass per component so that each keeps its own default port when only some fields come
# from the environment (AGENTWATCH_WORKER_HTTP__HOST alone must not lose the port).
class WorkerHttpSettings(HttpServiceSettings):
    port: int = Field(default=6066, ge=0, le=65535)
    """Port of the worker's /health and /metrics."""


class ClickHouseSinkHttpSettings(HttpServiceSettings):
    port: int = Field(default=9101, ge=0, le=65535)
    """Port of the ClickHouse sink's /health and /metrics."""


class ArchiveSinkHttpSettings(HttpServiceSettings):
    port: int = Field(default=9102, ge=0, le=65535)
    """Port of the archive sink's /health and /metrics."""


class AlertsHttpSettings(HttpServiceSettings):
    port: int = Field(default=9103, ge=0, le=65535)
    """Port of the alerting consumer's /health and /metrics."""

class CollectorSettings(HttpServiceSettings):
    """The collector (`agentwatch collector`) and the command hook (`agentwatch hook`)."""

    port: int = Field(default=4318, ge=0, le=65535)
    """OTLP/HTTP standard port; also serves POST /hooks, /health and /metrics."""
    inbox_dir: Path | None = None
    """Where `agentwatch hook` leaves hooks while the collector is down. Empty: <stack.dir>/hook-inbox."""
    hook_log: Path | None = None
    """Error log of `agentwatch hook` (never the payloads). Empty: <stack.dir>/logs/hook.log."""
    hook_timeout_s: float = Field(default=2.0, gt=0)
    """How long `agentwatch hook` waits for the collector before spooling to the inbox."""
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Largest request body accepted (after decompression); larger ones get 413."""
    excerpt_chars: int = Field(default=2000, ge=0)
    """Bound of the stdout/stderr/prompt excerpts carried in events."""
    pending_tool_calls: int = Field(default=10_000, ge=1)
    """PreToolUse calls remembered to join their PostToolUse (oldest forgotten first)."""
    pending_ttl_s: float = Field(default=3600.0, gt=0)
    """A PreToolUse without its PostToolUse after this long is published as unfinished."""
    inbox_poll_s: float = Field(default=1.0, gt=0)
    """How often the collector drains the command hook's inbox."""
    otlp_workers: int = Field(default=1, ge=0)
    """Processes that decode, map and encode OTLP batches (0: threads of the collector itself)."""

    def resolved_inbox_dir(self, stack_dir: Path) -> Path:
        return self.inbox_dir or stack_dir / "hook-inbox"

    def resolved_hook_log(self, stack_dir: Path) -> Path:
        return self.hook_log or stack_dir / "logs" / "hook.log"


class GatewaySettings(HttpServiceSettings):
    """The dashboard gateway (`agentwatch gateway`): WebSocket fan-out, REST API, web dashboard."""

    port: int = Field(default=8080, ge=0, le=65535)
    """Dashboard, WebSocket, REST API, /health and /metrics."""
    jwt_secret: SecretStr | None = None
    """HS256/384/512 signing secret. Empty: <stack.dir>/gateway.secret, generated once (local stack)."""
    jwt_algorithms: tuple[Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256"], ...] = (
        "HS256",)
    """Accepted token algorithms (JSON list); `none` is never accepted."""
    jwt_audience: str = "agentwatch"
    """Required `aud` claim."""
    jwt_issuer: str = "agentwatch"
    """Required `iss` claim."""
    jwt_public_key: str | None = None
    """PEM public key (or a path to one) that verifies RS*/ES* tokens."""
    jwks_url: str | None = None
    """JWKS endpoint whose keys (by `kid`) verify RS*/ES* tokens; fetched keys are cached."""
    jwks_cache_s: float = Field(default=300.0, gt=0)
    """How long fetched JWKS keys are reused."""
    token_ttl_s: int = Field(default=12 * 3600, ge=60)
    """Lifetime of tokens minted by `agentwatch token` (default 12 h)."""
    ws_token_ttl_s: int = Field(default=60, ge=5, le=600)
    """Lifetime of the short-lived tokens (POST /api/ws-token) a browser puts in the WebSocket URL."""
    rate_limit_rps: float = Field(default=100.0, gt=0)
    """Requests per second per user (REST, WebSocket handshakes and client messages)."""
    rate_limit_burst: int = Field(default=200, ge=1)
    """Requests a user may make at once before the per-second rate applies."""
    client_queue_max: int = Field(default=512, ge=8)
    """Messages waiting for one slow WebSocket client (coalesced per widget) before it is dropped."""
    client_queue_max_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    """Bytes waiting for one slow WebSocket client before it is dropped."""
    max_clients: int = Field(default=20_000, ge=1)
    """WebSocket connections one gateway process accepts (more get 503)."""
    heartbeat_s: float = Field(default=30.0, gt=0)
    """WebSocket ping interval; a client that does not answer is closed."""
    patterns_lookback_s: float = Field(default=24 * 3600.0, ge=0)
    """How far back the gateway reads the (not compacted) patterns topic at start."""
    partition_refresh_s: float = Field(default=30.0, gt=0)
    """How often the gateway looks for partitions added to the widgets and patterns topics."""
    pattern_alerts_per_session: int = Field(default=50, ge=1)
    """Most recent pattern alerts kept per session for the pattern_alerts widget."""
    tls_cert: Path | None = None
    """PEM certificate chain: serve HTTPS/WSS when set (with tls_key)."""
    tls_key: Path | None = None
    """PEM private key of tls_cert."""
    replay_to_kafka: bool = True
    """Dashboard replays are also produced to topics.replay (as `agentwatch replay` does)."""
    max_replays: int = Field(default=4, ge=1)
    """Replays one gateway runs at once."""
    audit_flush_s: float = Field(default=1.0, gt=0)
    """Audit rows are inserted into ClickHouse at most this often (batched)."""
    audit_buffer_max: int = Field(default=100_000, ge=100)
    """Audit rows held while ClickHouse is unreachable; beyond that the oldest are dropped (counted)."""
    clickhouse_pool: int = Field(default=4, ge=1, le=32)
    """ClickHouse connections for REST reads (each used by one worker thread at a time)."""


class SpoolSettings(_Section):
    """The durable on-disk spool every producer writes through before Kafka."""

    dir: Path | None = None
    """Root of the spools; each producer gets its own subfolder. Empty: <stack.dir>/spool."""
    max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)
    """Undelivered bytes one spool may hold; beyond that new events are refused (HTTP 503)."""
    segment_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    """A spool file is closed at this size; files whose events are all delivered are deleted."""
    fsync: bool = False
    """fsync before acknowledging an event: survives power loss too, not only a killed process."""
    max_in_flight: int = Field(default=20_000, ge=1)
    """Events handed to the Kafka client and not yet acknowledged; bounds memory while Kafka is away."""

    def resolved_dir(self, stack_dir: Path, name: str) -> Path:
        return (self.dir or stack_dir / "spool") / name


class ProducerSettings(_Section):
    """librdkafka tuning of the producers of the ingest topic (idempotence and acks=all are fixed)."""

    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    """Batch compression codec."""
    linger_ms: int = Field(default=5, ge=0)
    """How long the client waits to fill a batch."""
    batch_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest batch per partition."""
    partitioner: str = "murmur2_random"
    """Java-compatible, so every client (aiokafka/Faust, Java) puts a session on the same partition."""


class WorkerSettings(_Section):
    """The stream processor (`agentwatch worker`, processors/): validate, redact, enrich ingest."""

    app_id: str = "agentwatch-worker"
    """Faust app id: the aggregates' consumer group and the prefix of changelog topics and
    transactional ids; the first stage's group is `<app_id>-ingest`."""
    instance_id: str = ""
    """Names this worker's transactional producer (`<app_id>-ingest-<instance_id>`); stable
    across restarts so a restart fences its own unfinished transaction at once. Empty: host
    name and worker_http port."""
    processing_guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    """exactly_once writes events, dead letters and input offsets in one Kafka transaction per
    batch; at_least_once may repeat events after a crash (sinks dedupe on event_id)."""
    stages: tuple[Literal["ingest", "aggregates"], ...] = Field(
        default=("ingest", "aggregates"), min_length=1)
    """Stages this worker runs: `ingest` (validate, redact: ingest -> events and dlq) and
    `aggregates` (widgets and patterns: events -> widgets and patterns). Both by default; run
    them as separate workers (e.g. `AGENTWATCH_WORKER__STAGES='["ingest"]'`) to give each its
    own cores and scale them apart (docs/operations.md)."""
    aggregates_runtime: Literal["librdkafka", "faust"] = "librdkafka"
    """What runs the aggregates stage: `librdkafka`, a consume-fold-produce loop on a thread of
    its own (processors/aggregates_loop.py, group `<app_id>-aggregates`), or `faust`, the Faust
    agent and tables it replaced (processors/aggregates.py, the app's group `<app_id>`). Both
    keep their state in the same changelog topics. Kept for one release (docs/worker.md)."""
    processes: int = Field(default=1, ge=1, le=64)
    """Processes doing the first stage's per-message work (validate, redact, Avro). 1: the
    stage's own thread; more spread big batches over a pool (processors/pool.py), for a worker
    that owns more cores (docs/benchmarks.md)."""
    batch_max: int = Field(default=2000, ge=1)
    """Most ingest messages processed, produced and committed as one batch (one transaction);
    a batch takes what is already fetched and never waits to fill up."""
    batch_within_ms: int = Field(default=50, ge=1)
    """Longest the first stage blocks waiting for the first message of a batch (also how soon
    it notices a stop)."""
    min_batch_interval_ms: int = Field(default=50, ge=0)
    """The first stage takes a new batch (one transaction) at most this often, gathering what
    arrives meanwhile: fewer, larger transactions are cheaper for the broker and for every
    read_committed reader of events. The most it adds to an event's latency."""
    transaction_timeout_s: float = Field(default=30.0, ge=1.0)
    """Kafka aborts a first-stage transaction left open longer than this (a worker that died
    and never came back); until then its partitions' new owner waits for the offsets."""
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=1500)
    """Longest the aggregates' fetch waits on the broker for new events (Faust fixes 1,500 ms;
    a committed event can wait that long to be seen, see processors/fetch_wait.py); also the
    aggregates loop's fetch.wait.max.ms."""
    commit_interval_ms: int = Field(default=100, ge=10)
    """How often the Faust app commits its input offsets (its commit timer: the replay agent, and
    the aggregates agent with aggregates_runtime=faust); the loops commit at their own pace."""
    max_field_bytes: int = Field(default=64 * 1024, ge=256)
    """Payload and metadata strings longer than this (UTF-8) are cut to it and marked, not rejected."""
    max_event_bytes: int = Field(default=1024 * 1024, ge=4096)
    """An event still larger than this once encoded (after truncation) is dead-lettered as oversized."""
    dead_letter_excerpt_chars: int = Field(default=4096, ge=0)
    """Bound of the redacted text a dead letter keeps of the message it rejects."""
    max_clock_skew_s: float = Field(default=3600.0, gt=0)
    """Events stamped further than this in the future break the timestamp rule."""
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    """Kafka group session timeout: how soon a killed worker's partitions move to another one."""
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    """Group heartbeat; must stay well under a third of the session timeout."""
    stable_offsets_timeout_s: float = Field(default=10.0, ge=0)
    """exactly_once: longest a rebalance waits for the previous owner's committed offsets to be
    applied before seeking to them (see processors/stable_offsets.py); 0 does not wait."""

    @property
    def ingest_group(self) -> str:
        """Consumer group of the first stage: not the Faust app's, whose members speak Faust's
        own assignment protocol (a group cannot mix two)."""
        return f"{self.app_id}-ingest"


class WidgetSettings(_Section):
    """Live widget state of the worker (processors/widgets)."""

    coalesce_interval_ms: int = Field(default=250, ge=0)
    """At most one update per session and widget in this interval; also the most the dashboard lags."""
    flush_tick_ms: int = Field(default=25, ge=1)
    """aggregates_runtime=faust: how often a timer sends coalesced updates that no new event
    pushed out (the loop sends each as it falls due), and the replay agent's flush timer."""
    checkpoint_interval_ms: int = Field(default=1000, ge=1)
    """Widget and pattern state is written to its changelog (and the events acked) this often."""
    checkpoint_max_events: int = Field(default=20_000, ge=1)
    """...or as soon as this many events wait for a checkpoint."""
    replay_idle_timeout_s: float = Field(default=300.0, gt=0)
    """A replay view (widgets rebuilt from topics.replay) is dropped after this long without events."""
    replay_max_views: int = Field(default=64, ge=1)
    """Replay views one worker holds at once; past it the least recently active one is dropped."""


class PatternSettings(_Section):
    """Failure-pattern detection of the worker (processors/patterns); thresholds per session."""

    compile_errors: int = Field(default=3, ge=1)
    """More than this many compile errors within compile_window_s fires compile_fix_loop."""
    compile_window_s: float = Field(default=300.0, gt=0)
    """Window of compile_fix_loop."""
    memory_growth_pct: float = Field(default=20.0, gt=0)
    """Peak memory must grow more than this per run of the same command..."""
    memory_growth_runs: int = Field(default=3, ge=2)
    """...over this many consecutive runs to fire memory_growth."""
    slow_test_factor: float = Field(default=2.0, gt=1)
    """A test run longer than this times its suite's median duration fires slow_test."""
    slow_test_min_samples: int = Field(default=5, ge=1)
    """Runs of a suite needed before slow_test judges."""
    stall_after_s: float = Field(default=300.0, gt=0)
    """A live session without progress for this long fires stalled_session."""
    stall_check_interval_s: float = Field(default=15.0, gt=0)
    """How often the worker's timer looks for stalled sessions."""
    retry_storm_failures: int = Field(default=3, ge=2)
    """Consecutive identical failing commands (no file change in between) that fire retry_storm."""
    cost_usd_per_hour: float = Field(default=20.0, gt=0)
    """LLM spend rate over cost_window_s above which cost_spike fires."""
    cost_window_s: float = Field(default=900.0, gt=0)
    """Window of cost_spike."""
    evidence_limit: int = Field(default=20, ge=1)
    """Most evidence event ids carried by one alert."""
    notifications: bool = True
    """Also publish notification triggers (task completed/failed, critical error, session completed)."""


class SamplerSettings(HttpServiceSettings):
    """The host sampler (`agentwatch sampler`): CPU, memory and network of the agent's processes."""

    port: int = Field(default=9104, ge=0, le=65535)
    """/health and /metrics of the sampler."""
    interval_s: float = Field(default=1.0, gt=0)
    """How often the agents' process trees are sampled and resource.sample events emitted."""
    command_interval_s: float = Field(default=0.25, gt=0)
    """Sampling interval while a Bash tool call's processes run (only those processes)."""
    process_names: tuple[str, ...] = ("claude",)
    """Process names of the agents to watch (JSON list)."""
    cmdline_patterns: tuple[str, ...] = ("@anthropic-ai/claude-code", "claude-code/cli.js")
    """Substrings of an interpreter's script argument that make it an agent (npm installs run node)."""
    exclude_patterns: tuple[str, ...] = ("agentwatch hook",)
    """Child command lines never taken for a Bash tool call (command hooks)."""
    collector_url: str | None = None
    """Base URL of the collector whose GET /api/active-sessions names sessions and in-flight
    calls. Empty: http://<collector.host>:<collector.port>."""
    collector_timeout_s: float = Field(default=1.0, gt=0)
    """Timeout of one active-sessions request."""
    sessions_window_s: float = Field(default=24 * 3600.0, gt=0)
    """Sessions silent for longer than this are not matched to processes."""
    claude_dir: Path | None = None
    """Claude Code's folder (sessions/<pid>.json name a process's first session). Empty: ~/.claude."""
    network: bool = True
    """Report the TCP connections of the agents' process trees as network.request events."""
    include_loopback: bool = False
    """Also report connections to loopback addresses (the collector, local servers)."""
    network_bytes_every_s: float = Field(default=30.0, gt=0)
    """A long-lived connection's byte counts are reported at most this often (network.transfer)."""
    network_cpu_share: float = Field(default=0.005, gt=0, le=1)
    """Share of one core the socket lookups may use; a lookup costs more on hosts with many TCP
    sockets, so connections are looked up less often there (short ones may then be missed)."""
    command_max_track_s: float = Field(default=3600.0, gt=0)
    """A command still running this long after its PostToolUse (a background server) is reported
    with what was measured so far and no longer followed."""

    def resolved_collector_url(self, collector: HttpServiceSettings) -> str:
        return (self.collector_url or f"http://{collector.host}:{collector.port}").rstrip("/")

    def resolved_claude_dir(self) -> Path:
        return self.claude_dir or Path.home() / ".claude"


class AlertSettings(_Section):
    """The alerting consumer (`agentwatch alerts`): where pattern alerts are delivered."""

    channels: tuple[Literal["terminal", "webhook", "email"], ...] = ("terminal",)
    """Delivery channels, e.g. ["terminal","webhook","email"] (JSON list in the environment)."""
    min_severity: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """Alerts below this severity are not delivered (they are still consumed)."""
    consumer_group: str = "agentwatch-alerts"
    """Kafka consumer group of the alerting consumer."""
    dedup_capacity: int = Field(default=10_000, ge=1)
    """Recently delivered alert ids remembered, so a replayed alert is not delivered twice."""
    max_age_s: float = Field(default=3600.0, ge=0)
    """Alerts published longer ago than this (Kafka record time) when they are consumed are not
    delivered, only counted (skipped, reason stale) and logged: a first start on a topic with
    days of alerts, or a long outage of this consumer, does not send a storm of old
    notifications; they stay in ClickHouse and on the dashboard. 0: deliver whatever the age."""
    webhook_url: str | None = None
    """Generic webhook: alerts are POSTed here as JSON."""
    webhook_slack: bool = False
    """Post a Slack-compatible payload ({"text": ..., "blocks": [...]}) instead of the alert record."""
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    """Timeout of one POST."""
    webhook_max_attempts: int = Field(default=5, ge=1)
    """POST attempts per alert before it goes to the dead-letter file."""
    webhook_backoff_s: float = Field(default=0.5, gt=0)
    """First retry wait; doubles per attempt (with jitter, Retry-After honoured)."""
    smtp_host: str = "127.0.0.1"
    """SMTP server of the email digests."""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    """SMTP port."""
    smtp_starttls: bool = False
    """Upgrade the SMTP connection with STARTTLS."""
    smtp_username: str | None = None
    """SMTP login user (no login when empty)."""
    smtp_password: SecretStr | None = None
    """SMTP login password."""
    smtp_from: str = "agentwatch@localhost"
    """Sender address of the digests."""
    smtp_to: tuple[str, ...] = ()
    """Recipients of the digests (JSON list in the environment)."""
    digest_interval_s: float = Field(default=300.0, gt=0)
    """Alerts are gathered and mailed as one digest at most this often."""
    smtp_max_attempts: int = Field(default=3, ge=1)
    """Failed digests in a row before their alerts go to the dead-letter file."""
    state_dir: Path | None = None
    """Dead-letter file (dead-letters.jsonl) and pending digest; empty: <stack.dir>/alerts."""

    def resolved_state_dir(self, stack_dir: Path) -> Path:
        return self.state_dir or stack_dir / "alerts"


class StackSettings(_Section):
    """The local single-machine stack that `agentwatch up` manages."""

    dir: Path = REPO_ROOT / ".stack"
    """Jars, data, pid files and logs of the local stack."""
    kafka_version: str = "4.1.1"
    """Apache Kafka version fetched from Maven Central."""
    kafka_heap: str = "512m"
    """JVM heap of each local broker."""
    brokers: Literal[1, 3] = 1
    """1 for the single-node stack, 3 for the local 3-broker cluster."""
    kafka_controller_port: int = 9093
    """KRaft controller port of the single-node broker."""
    cluster_ports: tuple[int, int, int] = (9092, 9094, 9096)
    """Broker ports (first one for the single node); controllers listen on port + 1 in the cluster."""
    s3_port: int = Field(default=5000, ge=1, le=65535)
    """Port of the local S3 test endpoint (moto)."""
    start_s3: bool = True
    """Whether `agentwatch up` starts the S3 test endpoint."""
    start_timeout_s: float = Field(default=90.0, gt=0)
    """How long `up` waits for each service to become healthy."""

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


def _toml_path() -> Path | None:
    explicit = os.environ.get("AGENTWATCH_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("agentwatch.toml")
    return local if local.is_file() else None


class PrivacySettings(_Section):
    """Identity and consent (issue 11): who events belong to, and whether they may be collected."""

    user_id: str = ""
    """The user this collector attributes events to when a request names none (no
    X-Agentwatch-User header, no user_id in the hook body). Empty: the OS user running it."""
    consent_enabled: bool = True
    """Read per-user consent (table user_privacy) and drop opted-out users' events at the door."""
    refresh_s: float = Field(default=2.0, gt=0)
    """How often the collector re-reads the consent table: the delay before a change applies."""
    fail_open: bool = True
    """While the consent table cannot be read: true collects users not known to have opted out
    (availability), false collects nothing (privacy). Known opt-outs stay dropped either way."""
    max_stale_s: float = Field(default=60.0, gt=0)
    """After this long without a successful read the consent cache counts as unavailable."""
    mutation_timeout_s: float = Field(default=300.0, gt=0)
    """How long an erasure waits for ClickHouse to finish each row deletion."""


class Settings(BaseSettings):
    """Frozen configuration; build once at process start and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTWATCH_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    clickhouse_sink: ClickHouseSinkSettings = ClickHouseSinkSettings()
    retention: RetentionSettings = RetentionSettings()
    s3: S3Settings = S3Settings()
    archive: ArchiveSettings = ArchiveSettings()
    collector: CollectorSettings = CollectorSettings()
    spool: SpoolSettings = SpoolSettings()
    producer: ProducerSettings = ProducerSettings()
    gateway: GatewaySettings = GatewaySettings()
    # Health and /metrics endpoints of the components that serve no other HTTP.
    worker_http: WorkerHttpSettings = WorkerHttpSettings()
    clickhouse_sink_http: ClickHouseSinkHttpSettings = ClickHouseSinkHttpSettings()
    archive_sink_http: ArchiveSinkHttpSettings = ArchiveSinkHttpSettings()
    alerts_http: AlertsHttpSettings = AlertsHttpSettings()
    sampler: SamplerSettings = SamplerSettings()
    worker: WorkerSettings = WorkerSettings()
    widgets: WidgetSettings = WidgetSettings()
    patterns: PatternSettings = PatternSettings()
    alerts: AlertSettings = AlertSettings()
    privacy: PrivacySettings = PrivacySettings()
    stack: StackSettings = StackSettings()
    serde: SerdeSettings = SerdeSettings()
    redaction: RedactionSettings = RedactionSettings()
    log_level: str = "INFO"
    """Log level of every component."""
    log_format: Literal["json", "text"] = "json"
    """json: one JSON object per line (default); text for humans."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_path()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @cached_property
    def archive_target(self) -> str:
        return self.archive.resolved_target(self.stack.dir)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning pydantic's error into one that names the bad variable."""
    from pydantic import ValidationError

    from pipeline.errors import ConfigError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"AGENTWATCH_{'__'.join(str(p).upper() for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
