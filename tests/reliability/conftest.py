"""A private, full pipeline per reliability test: collector -> worker -> ClickHouse and archive
sinks, and the dashboard gateway with a recording WebSocket client (the leak scan reads what it
received).

Each component runs as the real subprocess (`python -m pipeline.cli ...`) against the shared
Kafka (or the test module's private brokers: override ``pipeline_bootstrap``) and ClickHouse,
on topics, consumer groups, a worker app id, a ClickHouse database, an archive folder and HTTP
ports that no other test shares. Logs go to files in tmp_path so the
tests can scan them for leaked secrets. Everything is stopped (SIGTERM) and its topics deleted
at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_harness import (
    GATEWAY_SECRET,
    TOPIC_KINDS,
    Component,
    Pipeline,
    delete_topics,
    free_port,
    mint_token,
)
from ws_recorder import WsRecorder

from pipeline.settings import ClickHouseSettings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store", type=float, default=None, metavar="MINUTES",
                     help="run the reliability soak scenario for MINUTES (also "
                          "AGENTWATCH_SOAK_MINUTES); without it the soak test is skipped")


def _soak_minutes(config: pytest.Config) -> float | None:
    value = config.getoption("--soak", default=None)  # absent unless this conftest is initial
    if value is None and os.environ.get("AGENTWATCH_SOAK_MINUTES"):
        value = float(os.environ["AGENTWATCH_SOAK_MINUTES"])
    return float(value) if value else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The soak runs for as long as asked, plus room to start, settle and scan.
    minutes = _soak_minutes(config)
    for item in items:
        if item.path.name == "test_soak.py" and minutes:
            item.add_marker(pytest.mark.timeout(int(minutes * 60 + 900)))


@pytest.fixture
def soak_minutes(request: pytest.FixtureRequest) -> float:
    """Minutes the soak runs (``--soak N`` or AGENTWATCH_SOAK_MINUTES); skipped without either."""
    minutes = _soak_minutes(request.config)
    if not minutes:
        pytest.skip("soak mode is off: pass --soak MINUTES or set AGENTWATCH_SOAK_MINUTES")
    return minutes


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Figures a scenario measured (``record_property("figure:...", value)``), printed at the end
    of the run so they are seen without -s (tests never assert on them)."""
    lines = [f"{report.nodeid}: {name.removeprefix('figure:')} = {value}"
             for reports in terminalreporter.stats.values() for report in reports
             if getattr(report, "when", None) == "call"
             for name, value in getattr(report, "user_properties", ())
             if str(name).startswith("figure:")]
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def pipeline_bootstrap(kafka_bootstrap: str) -> str:
    """The brokers of the private pipeline: the shared stack's, unless a module brings its own."""
    return kafka_bootstrap


@pytest.fixture
def pipeline_topics() -> dict[str, int]:
    """Topic layout (partitions, replication_factor, min_insync_replicas) a module may override."""
    return {"partitions": 2}


@pytest.fixture
def pipeline_env(
    pipeline_bootstrap: str, pipeline_topics: dict[str, int], clickhouse: ClickHouseSettings,
    clickhouse_db: str, tmp_path: Path,
) -> Iterator[tuple[str, dict[str, str]]]:
    """(prefix, environment) of a private pipeline; its topics exist and its database is migrated."""
    from pipeline.migrations import apply_migrations
    from pipeline.settings import KafkaSettings, TopicSettings
    from pipeline.topics import ensure_topics, topic_specs

    prefix = f"rel{uuid.uuid4().hex[:10]}"
    topics = {kind: f"{prefix}.{kind}" for kind in TOPIC_KINDS}
    kafka_bootstrap = pipeline_bootstrap
    partitions = pipeline_topics.get("partitions", 2)
    # Nothing of the outer environment may point a component at shared topics or ports.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update({
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        **{f"AGENTWATCH_TOPICS__{kind.upper()}": name for kind, name in topics.items()},
        "AGENTWATCH_TOPICS__PARTITIONS": str(partitions),
        "AGENTWATCH_TOPICS__REPLICATION_FACTOR": str(pipeline_topics.get("replication_factor", 1)),
        "AGENTWATCH_TOPICS__MIN_INSYNC_REPLICAS": str(pipeline_topics.get("min_insync_replicas", 1)),
        "AGENTWATCH_CLICKHOUSE__HOST": clickhouse.host,
        "AGENTWATCH_CLICKHOUSE__PORT": str(clickhouse.port),
        "AGENTWATCH_CLICKHOUSE__HTTP_PORT": str(clickhouse.http_port),
        "AGENTWATCH_CLICKHOUSE__USER": clickhouse.user,
        "AGENTWATCH_CLICKHOUSE__PASSWORD": clickhouse.password.get_secret_value(),
        "AGENTWATCH_CLICKHOUSE__DATABASE": clickhouse_db,
        "AGENTWATCH_CLICKHOUSE_SINK__GROUP_ID": f"{prefix}-clickhouse",
        "AGENTWATCH_CLICKHOUSE_SINK__BATCH_MAX_AGE_S": "0.3",
        "AGENTWATCH_CLICKHOUSE_SINK__SESSION_TIMEOUT_S": "6",
        "AGENTWATCH_CLICKHOUSE_SINK__RETRY_INITIAL_S": "0.2",
        "AGENTWATCH_CLICKHOUSE_SINK__RETRY_MAX_S": "2",
        "AGENTWATCH_WORKER__APP_ID": f"{prefix}-worker",
        "AGENTWATCH_WORKER__SESSION_TIMEOUT_S": "6",
        "AGENTWATCH_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "AGENTWATCH_ARCHIVE__TARGET": (tmp_path / "archive").as_uri(),
        "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": f"{prefix}-archive",
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_AGE_S": "0.5",
        "AGENTWATCH_ARCHIVE__SESSION_TIMEOUT_MS": "6000",
        "AGENTWATCH_STACK__DIR": str(tmp_path / "stack"),
        "AGENTWATCH_COLLECTOR__PORT": str(free_port()),
        "AGENTWATCH_WORKER_HTTP__PORT": str(free_port()),
        "AGENTWATCH_CLICKHOUSE_SINK_HTTP__PORT": str(free_port()),
        "AGENTWATCH_ARCHIVE_SINK_HTTP__PORT": str(free_port()),
        "AGENTWATCH_GATEWAY__PORT": str(free_port()),
        "AGENTWATCH_GATEWAY__JWT_SECRET": GATEWAY_SECRET,
        "AGENTWATCH_LOG_FORMAT": "json",
    })
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap),
                  topic_specs(TopicSettings(**topics, **pipeline_topics)))
    apply_migrations(clickhouse, clickhouse_db)
    try:
        yield prefix, env
    finally:
        delete_topics(kafka_bootstrap, (prefix,))


@pytest.fixture
def component_env() -> dict[str, dict[str, str]]:
    """Per-component environment overrides (component name -> variables); a test module
    overrides this fixture to point one component somewhere else (a proxy, an S3 bucket)."""
    return {}


@pytest.fixture
def pipeline(
    pipeline_env: tuple[str, dict[str, str]], component_env: dict[str, dict[str, str]],
    pipeline_bootstrap: str, clickhouse: ClickHouseSettings, clickhouse_db: str, tmp_path: Path,
) -> Iterator[Pipeline]:
    """The five components started in data-flow order (consumers first, so nothing waits), and
    a WebSocket client recording what the gateway sends about every session."""
    prefix, env = pipeline_env
    specs = {
        "worker": (["worker"], "AGENTWATCH_WORKER_HTTP__PORT"),
        "clickhouse_sink": (["sink", "clickhouse"], "AGENTWATCH_CLICKHOUSE_SINK_HTTP__PORT"),
        "archive_sink": (["sink", "archive"], "AGENTWATCH_ARCHIVE_SINK_HTTP__PORT"),
        "gateway": (["gateway"], "AGENTWATCH_GATEWAY__PORT"),
        "collector": (["collector"], "AGENTWATCH_COLLECTOR__PORT"),
    }
    components = {name: Component(name, args, int(env[port]), {**env, **component_env.get(name, {})},
                                  tmp_path / f"{name}.log")
                  for name, (args, port) in specs.items()}
    line = Pipeline(
        prefix=prefix,
        topics={kind: env[f"AGENTWATCH_TOPICS__{kind.upper()}"] for kind in TOPIC_KINDS},
        database=clickhouse_db, clickhouse=clickhouse, kafka_bootstrap=pipeline_bootstrap,
        archive_dir=tmp_path / "archive", workdir=tmp_path, env=env,
        # Stop order = this order: the collector's spool drains into Kafka first.
        components={name: components[name]
                    for name in ("collector", "worker", "clickhouse_sink", "archive_sink",
                                 "gateway")},
    )
    try:
        for name in ("worker", "clickhouse_sink", "archive_sink", "gateway", "collector"):
            components[name].start()
        line.recorder = WsRecorder(f"http://127.0.0.1:{components['gateway'].port}",
                                   mint_token("reliability-admin"))
        line.recorder.start()
        yield line
    finally:
        line.stop()
        # The worker creates its changelog topics itself, named after its app id (same prefix).
        delete_topics(pipeline_bootstrap, (prefix,))
