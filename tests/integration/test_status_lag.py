"""`agentwatch status` against the real broker: consumer lag per group from the admin API, and a
clean "kafka down" (no librdkafka connection spew on stderr) when the broker is away."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT, Settings
from pipeline.stack.lag import consumer_groups, measure_lag

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, n in per_partition.items():
        for i in range(n):
            producer.produce(topic, value=f"m{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                        asynchronous=False)
    finally:
        consumer.close()


def test_lag_per_group_is_end_minus_committed(
    kafka_bootstrap: str, kafka_topic: Callable[..., str],
) -> None:
    ingest = kafka_topic("lag.ingest", partitions=2)
    events = kafka_topic("lag.events", partitions=2)
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap},
        topics={"ingest": ingest, "events": events, "patterns": f"lag.none.{run}",
                "dlq": f"lag.none.{run}"},
        worker={"app_id": f"lag-worker-{run}"}, clickhouse_sink={"group_id": f"lag-ch-{run}"},
        archive={"consumer_group": f"lag-ar-{run}"}, alerts={"consumer_group": f"lag-al-{run}"})
    _produce(kafka_bootstrap, ingest, {0: 30, 1: 20})
    _produce(kafka_bootstrap, events, {0: 7, 1: 0})
    _commit(kafka_bootstrap, f"lag-worker-{run}-ingest", ingest, {0: 25, 1: 5})
    _commit(kafka_bootstrap, f"lag-ch-{run}", events, {0: 7})

    got = {(g.component, g.topic): g for g in measure_lag(settings.kafka, consumer_groups(settings))}
    worker = got[("worker", ingest)]
    assert (worker.lag, worker.partitions, worker.committed_partitions) == (5 + 15, 2, 2)
    sink = got[("clickhouse-sink", events)]
    assert (sink.lag, sink.committed_partitions) == (0, 1)
    # The archive group never committed: everything on the topic is still to read.
    archive = got[("archive-sink", events)]
    assert (archive.lag, archive.committed_partitions) == (7, 0)
    missing = got[("alerts", f"lag.none.{run}")]
    assert missing.lag is None and missing.error == "topic does not exist"


def test_status_with_kafka_down_says_down_without_librdkafka_noise(tmp_path: Path) -> None:
    broker, controller, *component_ports = _free_ports(9)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update({
        "AGENTWATCH_STACK__DIR": str(tmp_path / "stack"),
        "AGENTWATCH_STACK__CLUSTER_PORTS": json.dumps([broker, broker + 2, broker + 4]),
        "AGENTWATCH_STACK__KAFKA_CONTROLLER_PORT": str(controller),
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{broker}",
        **{f"AGENTWATCH_{section}__PORT": str(port) for section, port in zip(
            ("COLLECTOR", "GATEWAY", "WORKER_HTTP", "CLICKHOUSE_SINK_HTTP", "ARCHIVE_SINK_HTTP",
             "ALERTS_HTTP", "SAMPLER"), component_ports, strict=True)},
    })
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", "--json",
                             "--interval", "0.2"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "%3|" not in result.stderr and "FAIL" not in result.stderr, result.stderr[-2000:]
    report = json.loads(result.stdout)
    kafka = next(s for s in report["services"] if s["name"] == "kafka-1")
    assert not kafka["healthy"] and not kafka["running"]
    assert report["lag"] == [] and report["lag_error"] == "kafka down"
    # No component answers on its (free) port: nothing is scraped.
    assert report["throughput"] == []


def test_quiet_admin_does_not_print() -> None:
    # The same client status uses, against a port nothing listens on, in a child process so
    # librdkafka's stderr is visible to the test.
    code = ("from pipeline.settings import KafkaSettings\n"
            "from pipeline.stack.lag import measure_lag\n"
            "try:\n"
            "    measure_lag(KafkaSettings(bootstrap_servers='127.0.0.1:1'), [], timeout_s=1)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.stdout.strip() == "KafkaException"
    assert result.stderr == ""
