"""The collector's HTTP behaviour with an in-memory Kafka double (the real one: tests/integration)."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from claude_otel import log_request
from kafka_double import FakeProducer
from prometheus_client import CollectorRegistry

from pipeline.serde import AvroSerde
from pipeline.settings import Settings, load_settings
from producers import inbox
from producers.collector import hooks as hooks_module
from producers.collector import otlp
from producers.collector.app import create_app
from producers.publisher import EventPublisher
from producers.spool import SpoolFullError

CASES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "claude_code_hooks.json").read_text())
SERDE = AvroSerde()


def make_settings(tmp_path: Path, **collector: Any) -> Settings:
    return load_settings(
        spool={"dir": str(tmp_path / "spool"), "max_bytes": 1024 * 1024},
        collector={"inbox_dir": str(tmp_path / "inbox"), "max_body_bytes": 64 * 1024,
                   "otlp_workers": 0, **collector})


class Harness:
    def __init__(self, client: TestClient, producer: FakeProducer, publisher: EventPublisher,
                 registry: CollectorRegistry) -> None:
        self.client = client
        self.producer = producer
        self.publisher = publisher
        self.registry = registry

    def events(self) -> list[dict[str, Any]]:
        assert self.publisher.flush(10) == 0
        return [SERDE.decode_event(v) for v in self.producer.delivered]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def make(producer: FakeProducer | None = None, **collector: Any) -> Harness:
        settings = make_settings(tmp_path, **collector)
        fake = producer or FakeProducer()
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


async def test_hooks_are_answered_empty_and_reach_kafka_in_order(start: Callable[..., Any]) -> None:
    h: Harness = await start()
    names = ["session_start", "user_prompt", "pre_bash", "post_bash_test", "stop", "session_end"]
    for name in names:
        resp = await h.client.post("/hooks", json=CASES[name])
        assert resp.status == 200 and await resp.read() == b""
    assert [e["event_type"] for e in h.events()] == [
        "session.started", "user.prompt", "command.executed", "test.executed",
        "agent.state.transition", "session.ended"]
    assert h.metric("agentwatch_collector_events_received_total", source="hook",
                    type="command.executed") == 1
    assert h.metric("agentwatch_producer_events_produced_total", source="hook",
                    type="session.started") == 1


@pytest.mark.parametrize(("data", "reason"), [
    (b"{not json", "invalid_json"),
    (b'{"hook_event_name": "Stop"}', "not_a_hook"),
    (b"[1, 2, 3]", "not_a_hook"),
])
async def test_malformed_hooks_get_400_with_a_reason(start: Callable[..., Any], data: bytes,
                                                     reason: str) -> None:
    h: Harness = await start()
    resp = await h.client.post("/hooks", data=data, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"] == reason
    assert h.metric("agentwatch_collector_requests_rejected_total", endpoint="/hooks",
                    reason=reason) == 1
    # The collector is still fine afterwards.
    assert (await h.client.post("/hooks", json=CASES["stop"])).status == 200


async def test_too_large_bodies_get_413(start: Callable[..., Any]) -> None:
    h: Harness = await start()
    big = dict(CASES["user_prompt"], prompt="x" * 100_000)
    resp = await h.client.post("/hooks", json=big)
    assert resp.status == 413
    assert h.metric("agentwatch_collector_requests_rejected_total", endpoint="/hooks",
                    reason="too_large") == 1


async def test_gzip_bodies_are_read(start: Callable[..., Any]) -> None:
    h: Harness = await start()
    resp = await h.client.post("/hooks", data=gzip.compress(json.dumps(CASES["stop"]).encode()),
                               headers={"Content-Encoding": "gzip",
                                        "Content-Type": "application/json"})
    assert resp.status == 200
    assert [e["event_type"] for e in h.events()] == ["agent.state.transition"]


async def test_arrival_time_and_delivery_id_headers(start: Callable[..., Any]) -> None:
    h: Harness = await start()
    headers = {"X-Agentwatch-Received-Us": "1760000000000000", "X-Agentwatch-Delivery-Id": "abc123"}
    for _ in range(2):
        assert (await h.client.post("/hooks", json=CASES["stop"], headers=headers)).status == 200
    first, second = h.events()
    assert first["timestamp"] == 1_760_000_000_000_000
    assert first["event_id"] == second["event_id"]  # a relayed retry counts once downstream


async def test_a_full_spool_answers_503_with_retry_after(start: Callable[..., Any]) -> None:
    h: Harness = await start(FakeProducer(down=True))
    for size in (10_000, 100, 1):
        with pytest.raises(SpoolFullError):
            while True:
                h.publisher.spool.append([(b"k", b"x\x1fy", b"v" * size)])
    resp = await h.client.post("/hooks", json=CASES["stop"])
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"] == "spool_full"


@pytest.mark.parametrize("workers", [0, 1])
async def test_otlp_protobuf_gzip_and_json(start: Callable[..., Any], workers: int) -> None:
    h: Harness = await start(max_body_bytes=1024 * 1024, otlp_workers=workers)
    request = log_request()
    resp = await h.client.post("/v1/logs", data=gzip.compress(request.SerializeToString()),
                               headers={"Content-Type": "application/x-protobuf",
                                        "Content-Encoding": "gzip"})
    assert resp.status == 200 and resp.content_type == "application/x-protobuf"
    resp = await h.client.post("/v1/logs", data=otlp.to_json(request),
                               headers={"Content-Type": "application/json"})
    assert resp.status == 200 and await resp.json() == {}
    events = h.events()
    half = len(events) // 2
    # The same batch twice (an exporter retry) maps to the same event ids.
    assert [e["event_id"] for e in events[:half]] == [e["event_id"] for e in events[half:]]
    assert "llm.request" in {e["event_type"] for e in events}


@pytest.mark.parametrize("workers", [0, 1])
async def test_otlp_refusals(start: Callable[..., Any], workers: int) -> None:
    h: Harness = await start(otlp_workers=workers)
    resp = await h.client.post("/v1/metrics", data=b"x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await h.client.post("/v1/traces", data=b"\x0a\xff\xff",
                               headers={"Content-Type": "application/x-protobuf"})
    assert resp.status == 400 and (await resp.json())["error"] == "otlp_decode"


async def test_inbox_is_drained_at_start(tmp_path: Path, start: Callable[..., Any]) -> None:
    for i, name in enumerate(["session_start", "stop"]):
        inbox.write(tmp_path / "inbox", json.dumps(CASES[name]).encode(),
                    1_760_000_000_000_000 + i, f"d{i}")
    inbox.write(tmp_path / "inbox", b"garbage", 1_760_000_000_000_005, "d9")
    h: Harness = await start()
    events = h.events()
    assert [e["event_type"] for e in events] == ["session.started", "agent.state.transition"]
    assert events[0]["timestamp"] == 1_760_000_000_000_000
    assert inbox.pending(tmp_path / "inbox") == []
    assert len(list((tmp_path / "inbox" / "rejected").iterdir())) == 1


async def test_a_mapping_bug_still_keeps_the_hook(start: Callable[..., Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(hooks_module, "map_hook", broken)
    h: Harness = await start()
    assert (await h.client.post("/hooks", json=CASES["post_edit"])).status == 200
    [event] = h.events()
    assert event["event_type"] == "other" and event["metadata"]["mapping_error"] == "RuntimeError"


async def test_health_and_metrics(start: Callable[..., Any]) -> None:
    h: Harness = await start()
    assert (await h.client.post("/hooks", json=CASES["stop"])).status == 200
    resp = await h.client.get("/health")
    assert resp.status == 200
    assert (await resp.json())["healthy"] is True
    text = await (await h.client.get("/metrics")).text()
    assert "agentwatch_producer_produce_latency_seconds_bucket" in text
    assert "agentwatch_collector_request_seconds_bucket" in text


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("path", ["/hooks", "/v1/logs"])
async def test_bodies_that_do_not_match_their_content_encoding_get_400(
    start: Callable[..., Any], encoding: str, path: str
) -> None:
    h = await start()
    # aiohttp closes a connection whose body failed to decode; the next request needs a new one.
    for _ in range(2):
        resp = await h.client.post(path, data=b"definitely not compressed",
                                   headers={"Content-Encoding": encoding, "Connection": "close",
                                            "Content-Type": "application/json"})
        assert resp.status == 400, (path, encoding, resp.status)
        assert (await resp.json())["error"] == "bad_content_encoding"
    assert (await h.client.get("/health")).status == 200
