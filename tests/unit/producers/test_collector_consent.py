"""Identity and consent at the collector's door, with an in-memory Kafka double."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from claude_otel import log_request
from kafka_double import FakeProducer
from prometheus_client import CollectorRegistry

from pipeline.privacy import Telemetry
from pipeline.serde import AvroSerde
from pipeline.settings import load_settings
from producers.collector import otlp
from producers.collector.app import INTAKE, create_app
from producers.collector.consent import ConsentGate
from producers.publisher import EventPublisher

CASES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "claude_code_hooks.json").read_text())
SERDE = AvroSerde()


class Harness:
    def __init__(self, client: TestClient, producer: FakeProducer, publisher: EventPublisher,
                 registry: CollectorRegistry) -> None:
        self.client = client
        self.producer = producer
        self.publisher = publisher
        self.registry = registry

    @property
    def gate(self) -> ConsentGate:
        gate = self.client.app[INTAKE].gate
        assert gate is not None
        return gate

    def events(self) -> list[dict[str, Any]]:
        assert self.publisher.flush(10) == 0
        return [SERDE.decode_event(v) for v in self.producer.delivered]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def make(workers: int = 0, **privacy: Any) -> Harness:
        settings = load_settings(
            spool={"dir": str(tmp_path / "spool"), "max_bytes": 1024 * 1024},
            collector={"inbox_dir": str(tmp_path / "inbox"), "otlp_workers": workers},
            privacy={"consent_enabled": False, "user_id": "alice", **privacy})
        fake = FakeProducer()
        registry = CollectorRegistry()
        publisher = EventPublisher(settings, "collector", registry=registry,
                                   producer_factory=lambda _cb: fake)
        client = TestClient(TestServer(create_app(settings, publisher=publisher)))
        await client.start_server()
        clients.append(client)
        return Harness(client, fake, publisher, registry)

    yield make
    for client in clients:
        await client.close()


async def test_events_carry_the_configured_user_unless_the_request_names_one(
        start: Callable[..., Any]) -> None:
    h: Harness = await start()
    assert (await h.client.post("/hooks", json=CASES["session_start"])).status == 200
    assert (await h.client.post("/hooks", json=CASES["stop"],
                                headers={"X-Agentwatch-User": "carol"})).status == 200
    assert (await h.client.post("/hooks", json={**CASES["stop"], "user_id": "dave"})).status == 200
    users = [e["metadata"]["user_id"] for e in h.events()]
    assert users[0] == "alice" and users[-2] == "carol" and users[-1] == "dave"


async def test_opted_out_users_events_are_counted_and_never_produced(
        start: Callable[..., Any]) -> None:
    h: Harness = await start()
    h.gate.cache.set("bob", Telemetry.DISABLED)
    for name in ("session_start", "pre_bash", "post_bash_test", "session_end"):
        resp = await h.client.post("/hooks", json=CASES[name], headers={"X-Agentwatch-User": "bob"})
        assert resp.status == 200
    assert (await h.client.post("/hooks", json=CASES["stop"])).status == 200
    events = h.events()
    assert events and {e["metadata"]["user_id"] for e in events} == {"alice"}
    assert h.metric("agentwatch_collector_consent_dropped_requests_total", endpoint="/hooks") == 4
    assert h.client.app[INTAKE].state.pending == {}  # bob's PreToolUse was never held


@pytest.mark.parametrize("workers", [0, 1])
async def test_otlp_of_an_opted_out_user_is_acknowledged_and_dropped(
        start: Callable[..., Any], workers: int) -> None:
    h: Harness = await start(workers=workers)
    h.gate.cache.set("bob", Telemetry.DISABLED)
    body = otlp.to_json(log_request())
    headers = {"Content-Type": "application/json"}
    resp = await h.client.post("/v1/logs", data=body, headers={**headers, "X-Agentwatch-User": "bob"})
    assert resp.status == 200
    assert h.events() == []
    resp = await h.client.post("/v1/logs", data=body, headers={**headers, "X-Agentwatch-User": "erin"})
    assert resp.status == 200
    events = h.events()
    assert events and {e["metadata"]["user_id"] for e in events} == {"erin"}


@pytest.mark.parametrize("workers", [0, 1])
async def test_minimal_keeps_only_session_lifecycle_and_llm_usage(
        start: Callable[..., Any], workers: int) -> None:
    h: Harness = await start(workers=workers)
    h.gate.cache.set("alice", Telemetry.MINIMAL)
    for name in ("session_start", "user_prompt", "pre_bash", "post_bash_test", "session_end"):
        assert (await h.client.post("/hooks", json=CASES[name])).status == 200
    resp = await h.client.post("/v1/logs", data=otlp.to_json(log_request()),
                               headers={"Content-Type": "application/json"})
    assert resp.status == 200
    types = {e["event_type"] for e in h.events()}
    assert h.metric("agentwatch_collector_consent_dropped_events_total",
                    source="hook", reason="minimal") >= 1
    assert types <= {"session.started", "session.ended", "llm.request"}
    assert {"session.started", "session.ended", "llm.request"} <= types


async def test_failing_closed_collects_nothing_until_consent_is_known(
        start: Callable[..., Any]) -> None:
    h: Harness = await start(fail_open=False)
    assert (await h.client.post("/hooks", json=CASES["session_start"])).status == 200
    assert h.events() == []
    h.gate.refreshed({})
    assert (await h.client.post("/hooks", json=CASES["session_start"])).status == 200
    assert [e["event_type"] for e in h.events()] == ["session.started"]


async def test_held_tool_calls_published_later_keep_their_sessions_user_and_consent(
        start: Callable[..., Any]) -> None:
    h: Harness = await start()
    intake = h.client.app[INTAKE]
    assert (await h.client.post("/hooks", json=CASES["pre_bash"],
                                headers={"X-Agentwatch-User": "carol"})).status == 200
    assert (await h.client.post("/hooks", json=CASES["pre_edit"],
                                headers={"X-Agentwatch-User": "carol"})).status == 200
    assert len(intake.state.pending) == 2
    intake.state.pending_ttl_us = 0
    assert intake.expire_pending() == 2
    unfinished = [e for e in h.events() if e["metadata"].get("outcome") == "unfinished"]
    assert len(unfinished) == 2 and {e["metadata"]["user_id"] for e in unfinished} == {"carol"}

    assert (await h.client.post("/hooks", json=CASES["pre_bash"],
                                headers={"X-Agentwatch-User": "carol"})).status == 200
    h.gate.cache.set("carol", Telemetry.DISABLED)  # opted out while a call was held
    assert intake.expire_pending() == 0
    assert len([e for e in h.events() if e["metadata"].get("outcome") == "unfinished"]) == 2
