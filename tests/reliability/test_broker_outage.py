"""Broker outage: Kafka is stopped for 60 s while hooks keep arriving, then started again.

The pipeline runs on a private single broker (port 19292, controller 19293, its own data dir) so
the shared stack is not disturbed. While the broker is away the collector must keep accepting
hooks into its on-disk spool (the sender sees no failure), and every component must ride the
outage out; after the restart the spool drains and the counts are exact (simulator truth =
ClickHouse = archive recording lines, per session), with no canary downstream of redaction.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from private_kafka import private_kafka, start_node, stop_node
from reliability_harness import Pipeline, wait_until
from reliability_support import (
    assert_exact,
    canaries_of,
    ch_event_ids,
    downstream_places,
    drive,
    expected_per_session,
    find_canaries,
    topic_messages,
)

from pipeline.stack.kafka import KafkaStack
from producers.simulator.run import generate

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(420)]

PORT, CONTROLLER_PORT = 19292, 19293
OUTAGE_S = 60.0
"""As the issue states it; not shortened for CI."""
RUN_S = 100.0
"""The sender is paced to last about this long, so hooks arrive before, during and after the
outage (it starts once the first rows are in ClickHouse, ~10 s into the run)."""


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaStack]:
    kafka = private_kafka(tmp_path_factory.mktemp("kafka1"), (PORT, PORT + 2, PORT + 4), 1,
                          controller_port=CONTROLLER_PORT)
    try:
        kafka.start()
        kafka.wait_ready(kafka.stack.start_timeout_s)
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture
def pipeline_bootstrap(broker: KafkaStack) -> str:
    return broker.bootstrap_servers()


def _spooled(line: Pipeline) -> float:
    return line.components["collector"].metric_sum("agentwatch_producer_spool_backlog_events")


def test_broker_outage_60s_collector_spools_and_counts_stay_exact(
    pipeline: Pipeline, broker: KafkaStack, tmp_path: Path, record_property: Any,
) -> None:
    scripts = generate(4, "everything", seed=f"broker-outage-{uuid.uuid4().hex}")
    payloads = sum(len(s.steps) for s in scripts)
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts, rate=payloads / RUN_S)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: sum(map(len, ch_event_ids(pipeline).values())) >= 10, 90,
               "the first rows in ClickHouse")
    node = broker.nodes()[0]
    stop_node(broker, node)
    stopped_at = time.monotonic()
    try:
        # Hooks keep arriving and are accepted into the spool, not refused.
        wait_until(lambda: _spooled(pipeline) >= 10, OUTAGE_S, "the collector to spool hooks")
        backlog_during = _spooled(pipeline)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
        assert sender.is_alive(), "the run ended before the outage did: nothing arrived after it"
        down = {n: c.alive() for n, c in pipeline.components.items()}
        assert all(down.values()), {n: pipeline.components[n].tail() for n, ok in down.items()
                                    if not ok}
        spooled_at_restart = _spooled(pipeline)
    finally:
        start_node(broker, node)
    outage_s = time.monotonic() - stopped_at
    record_property("figure:broker_outage_s", round(outage_s, 1))
    record_property("figure:spool_backlog_events_at_restart", spooled_at_restart)
    assert spooled_at_restart >= backlog_during >= 10
    sender.join(240)
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    wait_until(lambda: _spooled(pipeline) == 0, 120, "the collector's spool to drain")
    expected = expected_per_session(scripts)
    assert_exact(pipeline, expected)
    # Every component rode the outage out: none restarted, all stop cleanly.
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), {
        n: (code, pipeline.components[n].tail()) for n, code in codes.items() if code != 0}
    canaries = canaries_of(scripts)
    ingest = topic_messages(pipeline.kafka_bootstrap, pipeline.topics["ingest"])
    assert find_canaries({"ingest": b"".join(m.value() for m in ingest)}, canaries)
    places = downstream_places(pipeline)
    assert pipeline.recorder is not None
    assert pipeline.recorder.sessions_with_widgets() >= set(expected), "WebSocket saw too little"
    leaks = find_canaries(places, canaries)
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
