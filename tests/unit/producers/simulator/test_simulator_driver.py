"""The driver against an in-process fake collector: order, retries, refusals, OTLP bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from producers.simulator.driver import Target
from producers.simulator.run import generate, simulate
from producers.simulator.spec import ScenarioSpec


@dataclass
class FakeCollector:
    hooks: list[dict[str, Any]] = field(default_factory=list)
    logs: list[ExportLogsServiceRequest] = field(default_factory=list)
    json_logs: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    busy_first: int = 0
    """Answer the first N requests 503 + Retry-After: 0 (a full spool)."""
    status: int = 200
    url: str = ""
    busy_logs_first: int = 0
    """Answer the first N OTLP requests 503 (keeping their bodies in ``refused_logs``)."""
    refused_logs: list[bytes] = field(default_factory=list)
    raw_logs: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.requests <= self.busy_first:
            return web.Response(status=503, headers={"Retry-After": "0"})
        if self.status != 200:
            return web.Response(status=self.status)
        if request.path == "/v1/logs" and len(self.refused_logs) < self.busy_logs_first:
            self.refused_logs.append(body)
            return web.Response(status=503, headers={"Retry-After": "0"})
        if request.path == "/v1/logs":
            self.raw_logs.append(body)
        if request.path == "/hooks":
            assert request.content_type == "application/json"
            self.hooks.append(json.loads(body))
        elif request.content_type == "application/x-protobuf":
            self.logs.append(ExportLogsServiceRequest.FromString(body))
        else:
            self.json_logs.append(json.loads(body))
        return web.json_response({})


@pytest.fixture
async def collector() -> AsyncIterator[FakeCollector]:
    fake = FakeCollector()
    app = web.Application()
    app.router.add_post("/hooks", fake.handle)
    app.router.add_post("/v1/logs", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def _by_session(hooks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for hook in hooks:
        out.setdefault(hook["session_id"], []).append(hook)
    return out


async def test_every_payload_arrives_in_session_order(collector: FakeCollector) -> None:
    expected = generate(3, "everything", seed=4)
    stats, truth = await simulate(Target.from_base(collector.url), sessions=3,
                                  scenario="everything", seed=4)
    total = sum(len(s.steps) for s in expected)
    assert (stats.sent, stats.failed) == (total, 0)
    assert truth.to_json()["payloads_total"] == total
    got = _by_session(collector.hooks)
    for script in expected:
        assert got[script.session_id] == [s.body for s in script.steps if s.channel == "hook"]
    records = [r for m in collector.logs for r in m.resource_logs[0].scope_logs[0].log_records]
    assert len(records) == sum(1 for s in expected for st in s.steps if st.channel == "otlp")
    assert all(r.time_unix_nano > 1_600_000_000 * 10**9 for r in records)  # stamped at send


async def test_a_busy_collector_is_retried_not_lost(collector: FakeCollector) -> None:
    collector.busy_first = 3
    stats, truth = await simulate(Target.from_base(collector.url), sessions=1,
                                  scenario="clean", seed=2)
    steps = len(generate(1, "clean", seed=2)[0].steps)
    assert (stats.sent, stats.failed, stats.retries) == (steps, 0, 3)
    assert stats.statuses[503] == 3
    assert truth.to_json()["payloads_total"] == steps


async def test_a_retried_otlp_request_is_resent_byte_for_byte(collector: FakeCollector) -> None:
    collector.busy_logs_first = 2
    stats, _ = await simulate(Target.from_base(collector.url), sessions=1, scenario="clean", seed=2)
    assert stats.failed == 0 and stats.retries == 2
    # Same time stamp, same bytes: the collector's content-derived event id stays the same.
    assert collector.refused_logs == [collector.raw_logs[0]] * 2


async def test_refused_payloads_are_counted_as_failed(collector: FakeCollector) -> None:
    collector.status = 400
    stats, truth = await simulate(Target.from_base(collector.url), sessions=1,
                                  scenario="clean", seed=2)
    assert stats.sent == 0 and stats.failed == len(generate(1, "clean", seed=2)[0].steps)
    assert stats.retries == 0
    assert truth.to_json()["payloads_total"] == 0


async def test_unreachable_collector_gives_up() -> None:
    tiny = ScenarioSpec(phases=("planning",), reads=0)
    steps = len(generate(1, tiny, seed=2)[0].steps)
    stats, truth = await simulate(Target.from_base("http://127.0.0.1:1"), sessions=1,
                                  scenario=tiny, seed=2, give_up_s=0.2)
    assert (stats.sent, stats.failed) == (0, steps)
    assert stats.errors and truth.to_json()["payloads_total"] == 0


async def test_otlp_json_encoding_and_duration_mode(collector: FakeCollector) -> None:
    stats, truth = await simulate(Target.from_base(collector.url, "json"), sessions=2,
                                  scenario="clean", seed=9, duration_s=0.0, rate=10_000)
    assert stats.failed == 0
    assert truth.sessions_started == truth.sessions_completed == 2
    assert collector.json_logs and not collector.logs
    record = collector.json_logs[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert int(record["timeUnixNano"]) > 0


async def test_stalls_pause_without_breaking_order(collector: FakeCollector) -> None:
    stats, truth = await simulate(Target.from_base(collector.url), sessions=1, scenario="stall",
                                  seed=1, stall_s=0.05)
    script = generate(1, "stall", seed=1, stall_s=0.05)[0]
    assert stats.failed == 0
    assert collector.hooks == [s.body for s in script.steps if s.channel == "hook"]
    assert truth.to_json()["sessions"][0]["stalls_s"] == [0.05]


def test_command_dry_run_prints_every_payload(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Any) -> None:
    from pipeline.cli import main

    truth_path = tmp_path / "truth.json"
    assert main(["simulate", "--scenario", "secrets", "--sessions", "2", "--seed", "3",
                 "--dry-run", "--truth", str(truth_path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    expected: Callable[[], list[Any]] = lambda: generate(2, "secrets", seed="3")  # noqa: E731
    assert [x["body"] for x in lines] == [s.body for sc in expected() for s in sc.steps]
    truth = json.loads(truth_path.read_text())
    assert truth["payloads_total"] == len(lines) and truth["canaries"]
