from __future__ import annotations

import json
import logging

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from pipeline.observability import JsonFormatter, health_app


def test_json_formatter_puts_extra_fields_at_top_level() -> None:
    record = logging.LogRecord("agentwatch.x", logging.WARNING, __file__, 1, "hello %s", ("w",), None)
    record.session_id = "s-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hello w"
    assert line["level"] == "warning"
    assert line["session_id"] == "s-1"


async def test_health_and_metrics_endpoints() -> None:
    registry = CollectorRegistry()
    counter = Counter("agentwatch_test_events", "events seen", registry=registry)
    counter.inc(3)
    state = {"healthy": True}
    app = health_app(registry, lambda: dict(state))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/health")
        assert resp.status == 200 and (await resp.json())["healthy"] is True
        state["healthy"] = False
        assert (await client.get("/health")).status == 503
        metrics = await (await client.get("/metrics")).text()
        assert "agentwatch_test_events_total 3.0" in metrics
