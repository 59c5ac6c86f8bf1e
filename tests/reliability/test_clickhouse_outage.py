"""ClickHouse outage mid-run: the ClickHouse sink reaches the (shared) server through a proxy the
test cuts while simulated sessions flow, then restores. Nothing may be lost or doubled: the sink
keeps its batch, retries, and its exactly-once watermark makes a retried insert count once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from reliability_harness import Pipeline, wait_until
from reliability_support import (
    assert_exact,
    canaries_of,
    ch_event_ids,
    downstream_places,
    drive,
    expected_per_session,
    find_canaries,
)
from tcp_proxy import TcpProxy

from pipeline.settings import ClickHouseSettings
from producers.simulator.run import generate

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


@pytest.fixture
def ch_proxy(clickhouse: ClickHouseSettings) -> Iterator[TcpProxy]:
    proxy = TcpProxy(clickhouse.host, clickhouse.port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def component_env(ch_proxy: TcpProxy) -> dict[str, dict[str, str]]:
    return {"clickhouse_sink": {"AGENTWATCH_CLICKHOUSE__HOST": "127.0.0.1",
                                "AGENTWATCH_CLICKHOUSE__PORT": str(ch_proxy.port),
                                "AGENTWATCH_CLICKHOUSE_SINK__INSERT_TIMEOUT_S": "10"}}


def test_clickhouse_outage_mid_run_loses_and_duplicates_nothing(
    pipeline: Pipeline, ch_proxy: TcpProxy,
) -> None:
    scripts = generate(4, "everything", seed=f"ch-outage-{uuid.uuid4().hex}")
    sink = pipeline.components["clickhouse_sink"]
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts, rate=80.0)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: sum(map(len, ch_event_ids(pipeline).values())) >= 30, 60,
               "the first rows in ClickHouse")
    ch_proxy.cut()
    try:
        failures = "agentwatch_sink_flush_failures_total{"
        wait_until(lambda: sink.metric_sum(failures) >= 2, 60, "the sink to notice the outage")
        assert sender.is_alive(), "the outage came after the end of the run"
        assert sink.alive() and sink.health().get("healthy"), sink.tail()
        sender.join(180)
        assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    finally:
        ch_proxy.restore()
    assert_exact(pipeline, expected_per_session(scripts))
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), codes
    leaks = find_canaries(downstream_places(pipeline), canaries_of(scripts))
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
