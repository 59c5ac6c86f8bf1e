"""Helpers of the collector integration tests: a running collector, and reading a topic back."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from pipeline.serde import AvroSerde
from pipeline.settings import Settings, load_settings
from producers.collector.app import create_app
from producers.publisher import EventPublisher

SERDE = AvroSerde()


@dataclass
class Message:
    key: bytes
    partition: int
    offset: int
    event: dict[str, Any]


def collector_settings(tmp_path: Path, bootstrap: str, topic: str, **collector: Any) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"ingest": topic},
        spool={"dir": str(tmp_path / "spool")},
        collector={"inbox_dir": str(tmp_path / "inbox"), "hook_log": str(tmp_path / "hook.log"),
                   **collector},
    )


@dataclass
class Running:
    server: TestServer
    publisher: EventPublisher
    registry: CollectorRegistry

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running_collector(settings: Settings) -> AsyncIterator[Running]:
    registry = CollectorRegistry()
    publisher = EventPublisher(settings, "collector", registry=registry)
    server = TestServer(create_app(settings, publisher=publisher), host="127.0.0.1")
    await server.start_server()
    try:
        yield Running(server, publisher, registry)
    finally:
        await server.close()


def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 60.0) -> list[Message]:
    """Read ``count`` messages from the start of ``topic`` (fewer if the timeout passes)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    continue
                out.append(Message(msg.key(), msg.partition(), msg.offset(),
                                   SERDE.decode_event(msg.value())))
    finally:
        consumer.close()
    return out


def topic_size(bootstrap: str, topic: str) -> int:
    """Messages in the topic, from the partitions' watermarks (no waiting for 'nothing more')."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=30)
        total = 0
        for partition in meta.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            total += high - low
        return total
    finally:
        consumer.close()
