"""Scale-out on a 3-broker cluster: 3 workers and 2 ClickHouse sinks share the partitions evenly,
and the counts stay exact (simulator truth = ClickHouse = archive, per session).

The cluster is private to this module (ports 19192/19194/19196, controllers on +1), so the
shared single-node stack on 9092 is untouched; it reuses the local stack's Kafka jars. Topics
are created the way the Kubernetes profile runs them: replication 3, min.insync.replicas 2.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from reliability_harness import TOPIC_KINDS, Component, Pipeline, delete_topics, free_port, wait_until
from reliability_support import assert_exact, drive, expected_per_session, topic_messages

from pipeline.settings import ClickHouseSettings, StackSettings
from producers.simulator.run import generate

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(480)]

PORTS = (19192, 19194, 19196)
PARTITIONS = 6
"""Divisible by 3 workers and by 2 sinks: an even spread is exactly 2 and exactly 3 each."""
WORKERS = 3
CLICKHOUSE_SINKS = 2
SESSIONS = 12


@pytest.fixture(scope="module")
def cluster_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from pipeline.stack.kafka import KafkaStack

    shared = StackSettings()
    stack = StackSettings(dir=tmp_path_factory.mktemp("kafka3"), brokers=3, cluster_ports=PORTS,
                          kafka_version=shared.kafka_version)
    kafka = KafkaStack(stack)
    source = KafkaStack(shared).libs
    assert (source / ".complete").is_file(), f"the local stack's Kafka jars are missing: {source}"
    kafka.libs.parent.mkdir(parents=True, exist_ok=True)
    kafka.libs.symlink_to(source, target_is_directory=True)
    try:
        kafka.start()
        kafka.wait_ready(stack.start_timeout_s)
        yield kafka.bootstrap_servers()
    finally:
        kafka.stop()


def _env(prefix: str, bootstrap: str, clickhouse: ClickHouseSettings, database: str,
         tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update({
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        **{f"AGENTWATCH_TOPICS__{kind.upper()}": f"{prefix}.{kind}" for kind in TOPIC_KINDS},
        "AGENTWATCH_TOPICS__PARTITIONS": str(PARTITIONS),
        "AGENTWATCH_TOPICS__REPLICATION_FACTOR": "3",
        "AGENTWATCH_TOPICS__MIN_INSYNC_REPLICAS": "2",
        "AGENTWATCH_CLICKHOUSE__HOST": clickhouse.host,
        "AGENTWATCH_CLICKHOUSE__PORT": str(clickhouse.port),
        "AGENTWATCH_CLICKHOUSE__HTTP_PORT": str(clickhouse.http_port),
        "AGENTWATCH_CLICKHOUSE__USER": clickhouse.user,
        "AGENTWATCH_CLICKHOUSE__PASSWORD": clickhouse.password.get_secret_value(),
        "AGENTWATCH_CLICKHOUSE__DATABASE": database,
        "AGENTWATCH_CLICKHOUSE_SINK__GROUP_ID": f"{prefix}-clickhouse",
        "AGENTWATCH_CLICKHOUSE_SINK__BATCH_MAX_AGE_S": "0.3",
        "AGENTWATCH_CLICKHOUSE_SINK__SESSION_TIMEOUT_S": "6",
        "AGENTWATCH_WORKER__APP_ID": f"{prefix}-worker",
        "AGENTWATCH_WORKER__SESSION_TIMEOUT_S": "6",
        "AGENTWATCH_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "AGENTWATCH_ARCHIVE__TARGET": (tmp_path / "archive").as_uri(),
        "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": f"{prefix}-archive",
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_AGE_S": "0.5",
        "AGENTWATCH_ARCHIVE__SESSION_TIMEOUT_MS": "6000",
        "AGENTWATCH_STACK__DIR": str(tmp_path / "stack"),
        "AGENTWATCH_LOG_FORMAT": "json",
    })
    return env


def _component(name: str, args: list[str], section: str, env: dict[str, str],
               tmp_path: Path) -> Component:
    # Every instance gets its own health port (and, for workers, its own Faust data dir).
    port = free_port()
    own = {**env, f"AGENTWATCH_{section}__PORT": str(port),
           "AGENTWATCH_STACK__DIR": str(tmp_path / "stack" / name)}
    return Component(name, args, port, own, tmp_path / f"{name}.log")


@pytest.fixture
def scaled(cluster_bootstrap: str, clickhouse: ClickHouseSettings, clickhouse_db: str,
           tmp_path: Path) -> Iterator[Pipeline]:
    from pipeline.migrations import apply_migrations
    from pipeline.settings import KafkaSettings, TopicSettings
    from pipeline.topics import ensure_topics, topic_specs

    prefix = f"scale{uuid.uuid4().hex[:8]}"
    env = _env(prefix, cluster_bootstrap, clickhouse, clickhouse_db, tmp_path)
    topics = {kind: f"{prefix}.{kind}" for kind in TOPIC_KINDS}
    ensure_topics(KafkaSettings(bootstrap_servers=cluster_bootstrap),
                  topic_specs(TopicSettings(**topics, partitions=PARTITIONS, replication_factor=3,
                                            min_insync_replicas=2)))
    apply_migrations(clickhouse, clickhouse_db)
    components: dict[str, Component] = {
        "collector": _component("collector", ["collector"], "COLLECTOR", env, tmp_path)}
    for i in range(WORKERS):
        components[f"worker{i}"] = _component(f"worker{i}", ["worker"], "WORKER_HTTP", env, tmp_path)
    for i in range(CLICKHOUSE_SINKS):
        components[f"clickhouse_sink{i}"] = _component(
            f"clickhouse_sink{i}", ["sink", "clickhouse"], "CLICKHOUSE_SINK_HTTP", env, tmp_path)
    components["archive_sink"] = _component(
        "archive_sink", ["sink", "archive"], "ARCHIVE_SINK_HTTP", env, tmp_path)
    line = Pipeline(prefix=prefix, topics=topics, database=clickhouse_db, clickhouse=clickhouse,
                    kafka_bootstrap=cluster_bootstrap, archive_dir=tmp_path / "archive",
                    workdir=tmp_path, env=env, components=components)
    try:
        consumers = [c for name, c in components.items() if name != "collector"]
        # Started together: one rebalance round instead of one per instance.
        with ThreadPoolExecutor(len(consumers)) as pool:
            for future in [pool.submit(c.start) for c in consumers]:
                future.result()
        components["collector"].start()
        yield line
    finally:
        line.stop()
        delete_topics(cluster_bootstrap, (prefix,))


def _worker_spread(line: Pipeline) -> list[int | None]:
    return [c.health().get("assigned_partitions") for n, c in line.components.items()
            if n.startswith("worker")]


def _sink_spread(line: Pipeline) -> list[int]:
    events = line.topics["events"]
    # The ClickHouse sink reports one loader per topic (events, patterns, dead letters).
    return [sum(1 for loader in c.health().get("loaders", {}).values()
                for p in loader.get("assigned", []) if p.startswith(f"{events}["))
            for n, c in line.components.items() if n.startswith("clickhouse_sink")]


def test_three_workers_two_sinks_spread_evenly_and_count_exactly(scaled: Pipeline) -> None:
    even_workers = [PARTITIONS // WORKERS] * WORKERS
    even_sinks = [PARTITIONS // CLICKHOUSE_SINKS] * CLICKHOUSE_SINKS
    wait_until(lambda: _worker_spread(scaled) == even_workers, 120,
               f"ingest partitions spread {even_workers} over the workers")
    wait_until(lambda: _sink_spread(scaled) == even_sinks, 120,
               f"events partitions spread {even_sinks} over the ClickHouse sinks")

    # The topics really are replicated across the three brokers.
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": scaled.kafka_bootstrap}).list_topics(timeout=10)
    assert len(meta.brokers) == 3
    ingest = meta.topics[scaled.topics["ingest"]].partitions
    assert len(ingest) == PARTITIONS
    assert all(len(p.replicas) == 3 for p in ingest.values())
    assert {p.leader for p in ingest.values()} == set(meta.brokers), "leaders not spread over brokers"

    scripts = generate(SESSIONS, "realistic", seed=f"scale-{uuid.uuid4().hex}")
    drive(scaled.collector_url, scripts)
    assert_exact(scaled, expected_per_session(scripts))

    # Every ingest message was processed once, by one of the three workers; the spread held.
    processed = sum(c.metric_sum("agentwatch_worker_messages_total{")
                    for n, c in scaled.components.items() if n.startswith("worker"))
    assert processed == len(topic_messages(scaled.kafka_bootstrap, scaled.topics["ingest"]))
    assert _worker_spread(scaled) == even_workers
    assert _sink_spread(scaled) == even_sinks
    codes = scaled.stop()
    assert all(code == 0 for code in codes.values()), {
        n: (code, scaled.components[n].tail()) for n, code in codes.items() if code != 0}

