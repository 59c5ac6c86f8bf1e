"""Soak: the mixed scenario for N minutes (the issue asks for 30), with the same exact accounting.

Off unless asked for: ``pytest tests/reliability/test_soak.py --soak 30`` or
``AGENTWATCH_SOAK_MINUTES=30``; CI does not run it. Waves of simulated sessions flow one after
another through one private pipeline; during each wave one fault strikes, in turn: the worker
SIGKILLed and restarted, both sinks SIGKILLed and restarted, ClickHouse cut off for 60 s, the
gateway SIGKILLed and restarted. Each wave must settle exactly before the next starts; at the
end every session of the whole soak is accounted for (simulator truth = ClickHouse = archive
lines, the events topic exactly once) and no canary is anywhere downstream of redaction, the
recording WebSocket client's messages included.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
from producers.simulator.script import SessionScript

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SESSIONS_PER_WAVE = 3
RATE = 20.0
"""Payloads/s of a wave: ~300 payloads take ~15 s, long enough for a fault to land inside."""
CLICKHOUSE_OUTAGE_S = 60.0


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


def _kill_and_restart(line: Pipeline, *names: str) -> None:
    for name in names:
        line.components[name].kill()
    for name in names:
        line.components[name].start()


def _faults(line: Pipeline, proxy: TcpProxy) -> list[tuple[str, Callable[[], None]]]:
    def clickhouse_outage() -> None:
        proxy.cut()
        try:
            time.sleep(CLICKHOUSE_OUTAGE_S)
        finally:
            proxy.restore()

    return [
        ("worker SIGKILL", lambda: _kill_and_restart(line, "worker")),
        ("sinks SIGKILL", lambda: _kill_and_restart(line, "clickhouse_sink", "archive_sink")),
        ("ClickHouse outage", clickhouse_outage),
        ("gateway SIGKILL", lambda: _kill_and_restart(line, "gateway")),
    ]


def _wave(line: Pipeline, scripts: list[SessionScript], fault: Callable[[], None]) -> None:
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(line.collector_url, scripts, rate=RATE)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    first = scripts[0].session_id
    wait_until(lambda: len(ch_event_ids(line).get(first, ())) > 0 or not sender.is_alive(), 120,
               "the wave's first rows in ClickHouse")
    try:
        fault()
    finally:
        sender.join(300)
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")


def test_soak_mixed_faults_exact_accounting(
    pipeline: Pipeline, ch_proxy: TcpProxy, soak_minutes: float, record_property: Any,
) -> None:
    run = uuid.uuid4().hex[:8]
    faults = _faults(pipeline, ch_proxy)
    deadline = time.monotonic() + soak_minutes * 60
    every: list[SessionScript] = []
    wave = 0
    while time.monotonic() < deadline:
        scripts = generate(SESSIONS_PER_WAVE, "everything", seed=f"soak-{run}-{wave}")
        name, fault = faults[wave % len(faults)]
        _wave(pipeline, scripts, fault)
        # Each wave settles exactly before the next: a loss is caught in the wave that caused it.
        assert_exact(pipeline, expected_per_session(scripts), all_sessions=False,
                     events_topic_exact=False)
        assert all(c.alive() for c in pipeline.components.values()), (wave, name, {
            n: c.tail() for n, c in pipeline.components.items() if not c.alive()})
        every.extend(scripts)
        wave += 1
    expected = expected_per_session(every)
    record_property("figure:soak_waves", wave)
    record_property("figure:soak_events", sum(expected.values()))
    assert_exact(pipeline, expected)
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), {
        n: (code, pipeline.components[n].tail()) for n, code in codes.items() if code != 0}
    places = downstream_places(pipeline)
    assert pipeline.recorder is not None
    assert pipeline.recorder.sessions_with_widgets() >= set(expected), "WebSocket saw too little"
    leaks = find_canaries(places, canaries_of(every))
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
