"""The sampler service loop: polls the collector's view, ticks, publishes, reports its health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fake_host import FakeHost

from pipeline.errors import TransientError
from pipeline.serde import AvroSerde
from pipeline.settings import Settings, load_settings
from producers.publisher import EventPublisher
from producers.sampler.main import SamplerService
from producers.sampler.view import fetch_view, parse_view

SERDE = AvroSerde()
SID = "0d9f7c56-0d55-4e0e-9a49-44a9c7a1c001"


class Producer:
    """Acknowledges everything on poll (confluent_kafka.Producer's shape)."""

    def __init__(self) -> None:
        self.delivered: list[bytes] = []
        self._queue: list[tuple[bytes, Callable[[Any, Any], None]]] = []

    def produce(self, topic: str, value: bytes, key: bytes, *, on_delivery: Any) -> None:
        self._queue.append((value, on_delivery))

    def poll(self, timeout: float) -> int:
        served, self._queue = self._queue, []
        for value, callback in served:
            self.delivered.append(value)
            callback(None, None)
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return 0


def settings_for(tmp_path: Path, url: str) -> Settings:
    return load_settings(spool={"dir": str(tmp_path / "spool")},
                         sampler={"collector_url": url, "interval_s": 0.05,
                                  "command_interval_s": 0.01, "claude_dir": str(tmp_path)})


def test_parse_view_skips_what_it_does_not_understand() -> None:
    view = parse_view({"now_us": 5, "sessions": [
        {"session_id": "a", "cwd": "/r", "started_us": 1, "last_seen_us": 2, "calls": [
            {"tool_use_id": "t1", "tool_name": "Bash", "started_us": 3, "command": "ls"},
            {"tool_name": "Bash"}, "junk"]},
        {"cwd": "/no-id"}, 7, {"session_id": "b", "calls": None, "started_us": "x"}]})
    assert [s.session_id for s in view.sessions] == ["a", "b"]
    assert list(view.bash_calls()) == ["t1"] and view.bash_calls()["t1"].session_id == "a"
    assert view.session("b") is not None and view.session("b").started_us is None  # type: ignore[union-attr]
    assert parse_view(None).sessions == () and parse_view({"sessions": "x"}).sessions == ()


def test_an_unreachable_collector_is_a_transient_error() -> None:
    with pytest.raises(TransientError):
        fetch_view("http://127.0.0.1:9", since_us=0, timeout_s=0.5)


async def test_the_loop_samples_publishes_and_reports(tmp_path: Path) -> None:
    host = FakeHost(now=time.time())
    agent = host.spawn(1, "claude", ("claude",), cwd="/repo")
    polls: list[str] = []

    async def active(request: web.Request) -> web.Response:
        polls.append(request.query.get("since_us", ""))
        us = int(time.time() * 1e6)
        return web.json_response({"now_us": us, "sessions": [
            {"session_id": SID, "cwd": "/repo", "started_us": us, "last_seen_us": us,
             "calls": []}]})

    app = web.Application()
    app.router.add_get("/api/active-sessions", active)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    producer = Producer()
    settings = settings_for(tmp_path, str(server.make_url("")).rstrip("/"))
    publisher = EventPublisher(settings, "sampler", producer_factory=lambda _cb: producer).start()
    service = SamplerService(settings, publisher, source=host.source())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        deadline = time.monotonic() + 20
        while service.health()["events"].get("resource.sample", 0) < 2:
            assert time.monotonic() < deadline, "no resource samples"
            host.now = time.time()
            host.burn(agent, 0.001)
            await asyncio.sleep(0.02)
        health = service.health()
    finally:
        stop.set()
        await task
    assert publisher.flush(10) == 0
    publisher.close()
    await server.close()
    events = [SERDE.decode_event(v) for v in producer.delivered]
    assert {e["event_type"] for e in events} == {"resource.sample"}
    assert {e["session_id"] for e in events} == {SID}
    assert polls and all(p.lstrip("-").isdigit() for p in polls)
    assert health["healthy"] and health["agents"] == 1 and health["agents_resolved"] == 1
    assert health["events"]["resource.sample"] >= 2
    assert (service.registry.get_sample_value("agentwatch_sampler_ticks_total",
                                              {"kind": "full"}) or 0) >= 2
    assert service.registry.get_sample_value("agentwatch_sampler_agents") == 1
    assert (service.registry.get_sample_value("agentwatch_sampler_rss_bytes") or 0) > 0


async def test_the_loop_keeps_going_without_a_collector(tmp_path: Path) -> None:
    host = FakeHost(now=time.time())
    host.spawn(1, "claude", ("claude",), cwd="/repo")
    settings = settings_for(tmp_path, "http://127.0.0.1:9")
    publisher = EventPublisher(settings, "sampler", producer_factory=lambda _cb: Producer())
    service = SamplerService(settings, publisher.start(), source=host.source())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    deadline = time.monotonic() + 20
    while (service.registry.get_sample_value("agentwatch_sampler_collector_errors_total") or 0) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    stop.set()
    await task
    publisher.close()
    assert service.health()["agents"] == 1 and service.health()["agents_resolved"] == 0
