"""Rebalance: a second worker and a second ClickHouse sink join their groups while sessions flow,
then the first worker and the first sink leave (SIGTERM) while more sessions flow. Partitions
move in each group twice; the committed events topic must hold every event exactly once, and the
sinks must stay exact (no event lost in a handover, no row or recording line written twice).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from reliability_harness import Component, Pipeline, free_port, wait_until
from reliability_support import (
    assert_exact,
    canaries_of,
    downstream_places,
    drive,
    expected_per_session,
    find_canaries,
)

from producers.simulator.run import generate
from producers.simulator.script import SessionScript

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def _second(line: Pipeline, name: str, args: list[str], port_var: str) -> Component:
    port = free_port()
    first = line.components[name]
    # Its own stack dir, as on another machine (a worker keeps its Faust data dir there).
    env = {**first.env, port_var: str(port),
           "AGENTWATCH_STACK__DIR": str(line.workdir / f"stack-{name}2")}
    extra = Component(f"{name}2", args, port, env, line.workdir / f"{name}2.log")
    line.components[extra.name] = extra
    return extra


def _while_sending(line: Pipeline, scripts: list[SessionScript], change: Callable[[], None]) -> None:
    """Run ``change`` (a join or a leave) while ``scripts`` are being sent."""
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(line.collector_url, scripts, rate=50.0)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    try:
        change()
    finally:
        sender.join(180)
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")


def test_worker_joins_and_sink_joins_and_leaves_mid_run(pipeline: Pipeline) -> None:
    scripts = generate(6, "everything", seed=f"rebalance-{uuid.uuid4().hex}")
    worker1 = pipeline.components["worker"]
    worker2 = _second(pipeline, "worker", ["worker"], "AGENTWATCH_WORKER_HTTP__PORT")
    sink2 = _second(pipeline, "clickhouse_sink", ["sink", "clickhouse"],
                    "AGENTWATCH_CLICKHOUSE_SINK_HTTP__PORT")
    sink1 = pipeline.components["clickhouse_sink"]

    def join() -> None:
        worker2.start()
        sink2.start()

    def shares() -> list[Any]:
        return [worker1.health().get("assigned_partitions"),
                worker2.health().get("assigned_partitions")]

    def leave() -> None:
        # The join has settled first: each worker owns one ingest partition.
        wait_until(lambda: shares() == [1, 1], 60, "one ingest partition per worker")
        assert worker1.stop() == 0, worker1.tail()
        assert sink1.stop() == 0, sink1.tail()

    _while_sending(pipeline, scripts[:3], join)
    _while_sending(pipeline, scripts[3:], leave)
    # The survivors own everything: both ingest partitions, every events partition.
    wait_until(lambda: worker2.health().get("assigned_partitions") == 2, 60,
               "the second worker owns both ingest partitions")
    assert worker1.exit_codes == [0] and sink1.exit_codes == [0]
    assert sink2.alive() and worker2.alive()
    assert_exact(pipeline, expected_per_session(scripts), events_topic_exact=True)
    codes = pipeline.stop()
    for name in ("collector", "archive_sink", "clickhouse_sink2", "worker2"):
        assert codes[name] == 0, (name, pipeline.components[name].tail())
    leaks = find_canaries(downstream_places(pipeline), canaries_of(scripts))
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
