"""The batching loop's group watchdog against the real Kafka: a consumer that never gets into its
group (as librdkafka after the broker outage in docs/reliability.md, Findings) turns the loop
unhealthy and is replaced; the fresh consumer joins and loads everything."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from consumers.base import (
    BatchingConfig,
    BatchingConsumer,
    BatchingMetrics,
    KafkaConsumer,
    consumer_config,
)
from pipeline.settings import KafkaSettings
from pipeline.testing import InMemoryDeadLetters, InMemorySink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class NeverJoins:
    """A real client that never subscribes: out of its group while Kafka answers."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        return None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        time.sleep(timeout)
        return []

    def list_topics(self, topic: str, timeout: float) -> Any:
        return self.consumer.list_topics(topic, timeout=timeout)

    def memberid(self) -> str | None:
        return cast("str | None", self.consumer.memberid())

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> Any:
        raise AssertionError("nothing is assigned, so nothing is committed")

    def pause(self, partitions: list[Any]) -> None: ...
    def resume(self, partitions: list[Any]) -> None: ...

    def close(self) -> None:
        self.consumer.close()
        self.closed = True


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_consumer_out_of_its_group_is_reported_and_replaced(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], unique_name: Callable[[str], str],
) -> None:
    topic = kafka_topic("watchdog", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, key=f"s{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
    assert producer.flush(10) == 0
    conf = consumer_config(KafkaSettings(bootstrap_servers=kafka_bootstrap),
                           unique_name("watchdog-group"), **{"session.timeout.ms": 6000})
    stuck = NeverJoins(Consumer(conf))
    fresh: list[Consumer] = []

    def factory() -> KafkaConsumer:
        fresh.append(Consumer(conf))
        return cast("KafkaConsumer", fresh[-1])

    sink, registry = InMemorySink(), CollectorRegistry()
    loop: BatchingConsumer[bytes] = BatchingConsumer(
        name="watchdog", consumer=cast("KafkaConsumer", stuck), consumer_factory=factory,
        topics=[topic], deserialize=bytes, sink=sink, dead_letters=InMemoryDeadLetters(),
        metrics=BatchingMetrics(registry),
        config=BatchingConfig(max_age_s=0.2, unassigned_timeout_s=1.0, rejoin_timeout_s=4.0,
                              group_check_interval_s=0.3, metadata_timeout_s=2.0))
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: not loop.health()["healthy"], 30, "the stuck loop to turn unhealthy")
        health = loop.health()
        assert health["reason"].startswith("not_in_group") and not health["in_group"]
        assert not fresh and sink.written == []
        wait_for(lambda: len(sink.written) == 10, 60, "the fresh consumer to load the topic")
        assert stuck.closed and len(fresh) == 1
        health = loop.health()
        assert health["healthy"] and health["in_group"]
        assert sorted(health["assigned"]) == [f"{topic}[0]", f"{topic}[1]"]
        assert sorted(sink.values()) == sorted(f"v{i}".encode() for i in range(10))
        assert registry.get_sample_value("agentwatch_sink_consumer_recreations_total",
                                         {"sink": "watchdog"}) == 1.0
        assert registry.get_sample_value("agentwatch_sink_unassigned_seconds",
                                         {"sink": "watchdog"}) == 0.0
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive() and loop.health()["state"] == "stopped"
