"""A real Kafka outage: a private broker is stopped under the collector and started again.

The shared broker on 9092 is never touched: this test runs its own single-node KRaft broker on
free ports with the local stack's code (and its already downloaded jars), stops it, posts 10,000
hooks, starts it again and checks that every event arrives once, in per-session order.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from collector_support import collector_settings, consume, running_collector, topic_size

from pipeline.settings import StackSettings, load_settings
from pipeline.stack.kafka import KafkaStack
from pipeline.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration

SESSIONS = 20
PER_SESSION = 500
WARMUP = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[KafkaStack]:
    shared = load_settings().stack
    stack = KafkaStack(StackSettings(
        dir=tmp_path / "stack", kafka_heap=shared.kafka_heap,
        cluster_ports=(free_port(), free_port(), free_port()), kafka_controller_port=free_port()))
    source = KafkaStack(shared)
    if not source.installed():
        source.install()
    stack.root.mkdir(parents=True)
    os.symlink(source.libs, stack.libs)
    # A cluster id starting with "-" reads as an option to the storage tool: pick one that does not.
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    (stack.root / "single").mkdir()
    (stack.root / "single" / "cluster-id").write_text(cluster_id)
    stack.start()
    try:
        stack.wait_ready(120)
        yield stack
    finally:
        stack.stop()


def hook(session: int, seq: int) -> dict[str, object]:
    return {"session_id": f"outage-{session:02d}", "hook_event_name": "PostToolUse",
            "tool_name": "Bash", "tool_use_id": f"toolu_{session:02d}_{seq:05d}",
            "tool_input": {"command": f"echo {seq}"},
            "tool_response": {"stdout": f"{seq}\n", "stderr": "", "interrupted": False}}


async def post_session(http: aiohttp.ClientSession, url: str, session: int, seqs: range) -> None:
    for seq in seqs:  # one session's hooks arrive one after the other, as from one agent
        resp = await http.post(url, json=hook(session, seq))
        assert resp.status == 200
        await resp.read()


async def test_ten_thousand_events_survive_a_kafka_outage(tmp_path: Path,
                                                          private_kafka: KafkaStack) -> None:
    bootstrap = private_kafka.bootstrap_servers()
    topic = "agent.telemetry.ingest.outage"
    settings = collector_settings(tmp_path, bootstrap, topic)
    ensure_topics(settings.kafka, [TopicSpec(topic, 3, 1)])
    produced = "agentwatch_producer_events_produced_total"
    labels = {"source": "hook", "type": "command.executed"}

    async with running_collector(settings) as collector, aiohttp.ClientSession() as http:
        url = collector.url("/hooks")
        await post_session(http, url, 0, range(WARMUP))
        assert await asyncio.to_thread(collector.publisher.flush, 60) == 0
        assert collector.metric(produced, **labels) == WARMUP

        await asyncio.to_thread(private_kafka.stop)
        await asyncio.gather(*(
            post_session(http, url, s, range(WARMUP, WARMUP + PER_SESSION) if s == 0
                         else range(PER_SESSION))
            for s in range(SESSIONS)))
        posted = SESSIONS * PER_SESSION
        # Every one answered 200 and is on disk; Kafka has none of them.
        assert collector.publisher.backlog() == posted
        assert collector.metric("agentwatch_producer_events_spooled_total", **labels) \
            == WARMUP + posted
        assert collector.metric(produced, **labels) == WARMUP

        await asyncio.to_thread(private_kafka.start)
        await asyncio.to_thread(private_kafka.wait_ready, 120)
        assert await asyncio.to_thread(collector.publisher.flush, 180) == 0
        assert collector.metric(produced, **labels) == WARMUP + posted

    messages = await asyncio.to_thread(consume, bootstrap, topic, WARMUP + posted, 60.0)
    assert len(messages) == WARMUP + posted
    assert await asyncio.to_thread(topic_size, bootstrap, topic) == WARMUP + posted
    ids = [m.event["event_id"] for m in messages]
    assert len(set(ids)) == len(ids)
    per_session: dict[str, list[int]] = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        event = message.event
        per_session.setdefault(event["session_id"], []).append(int(event["tool_use_id"][-5:]))
    assert len(per_session) == SESSIONS
    for session, seqs in per_session.items():
        expected = WARMUP + PER_SESSION if session == "outage-00" else PER_SESSION
        assert seqs == sorted(seqs) and len(seqs) == expected, session
