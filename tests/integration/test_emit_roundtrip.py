"""SDK and `agentwatch emit` against the real broker: the event read back is the event emitted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from pipeline.sdk import Emitter, KafkaEventPublisher
from pipeline.serde import AvroSerde
from pipeline.settings import KafkaSettings, ProducerSettings, load_settings

pytestmark = pytest.mark.integration


def _read(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
    """Messages from offset 0; waits for ``count``, then one more second to catch extras."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"rb-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
                if len(out) == count:
                    deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        consumer.close()
    return out


def test_sdk_events_arrive_keyed_and_decodable(
    kafka_bootstrap: str, kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic("emit", partitions=3)
    publisher = KafkaEventPublisher(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic,
                                    AvroSerde(), tuning=ProducerSettings())
    with Emitter(publisher, session_id="sess-emit-1", agent="tester") as em:
        sent = [
            em.emit_event("deploy.finished", env="prod"),
            em.emit_progress(50.0, "halfway"),
            em.emit_error(RuntimeError("boom")),
            em.emit_event("file.write", path="/a.py", session_id="sess-emit-2"),
            # More sessions, so a partitioner mismatch below cannot pass by chance.
            *(em.emit_event("deploy.finished", session_id=f"sess-p{i}") for i in range(8)),
        ]
    assert publisher.delivered == 12 and publisher.failed == 0

    messages = _read(kafka_bootstrap, topic, 12)
    serde = AvroSerde()
    got = {serde.decode_event(m.value())["event_id"]: (m.key(), serde.decode_event(m.value()))
           for m in messages}
    assert len(messages) == 12
    assert got == {e["event_id"]: (e["session_id"].encode(), e) for e in sent}
    # Key = session_id keeps a session on one partition, and the same partition every other
    # producer (configured with the shared partitioner) picks for that session.
    partitions: dict[bytes, set[int]] = {}
    for m in messages:
        partitions.setdefault(m.key(), set()).add(m.partition())
    assert len(partitions[b"sess-emit-1"]) == 1
    reference_topic = kafka_topic("emitref", partitions=3)
    reference = Producer({"bootstrap.servers": kafka_bootstrap,
                          "partitioner": ProducerSettings().partitioner})
    for key in partitions:
        reference.produce(reference_topic, key=key, value=b"x")
    assert reference.flush(30) == 0
    ref = {m.key(): m.partition() for m in _read(kafka_bootstrap, reference_topic, len(partitions))}
    assert ref == {key: next(iter(parts)) for key, parts in partitions.items()}


def test_emit_command_prints_the_event_it_delivered(
    kafka_bootstrap: str, kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic("emitcli")
    env = {**os.environ, "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "emit", "--type", "agent.task.progress",
         "--session", "sess-cli", "--topic", topic, "--json", "-"],
        input=json.dumps({"progress_pct": 75, "current_step": "lint", "task_id": "t1"}),
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    messages = _read(kafka_bootstrap, topic, 1)
    assert len(messages) == 1
    event = AvroSerde().decode_event(messages[0].value())
    assert event["event_id"] == printed["event_id"]
    assert (event["session_id"], event["task_id"], event["source"]) == ("sess-cli", "t1", "sdk")
    assert event["payload"][1]["progress_pct"] == 75.0
    assert event["payload"][1]["current_step"] == "lint"


def test_emit_command_rejects_a_bad_event_without_producing(
    kafka_bootstrap: str, kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic("emitbad")
    env = {**os.environ, "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "emit", "--type", "file.write", "--session", "s",
         "--topic", topic, "--json", '{"path": "/x", "lines_added": -4}'],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert "lines_added" in proc.stderr
    assert _read(kafka_bootstrap, topic, 1, timeout_s=3.0) == []


def test_unreachable_broker_is_reported_as_undelivered() -> None:
    settings = load_settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    publisher = KafkaEventPublisher.from_settings(settings, topic="nowhere",
                                                  delivery_timeout_ms=1500)
    em = Emitter(publisher, session_id="s")
    em.emit_event("deploy.finished")
    assert em.flush(10.0) == 1
    assert publisher.failed == 1 and publisher.last_error
