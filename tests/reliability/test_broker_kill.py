"""One broker of three killed mid-run: replication 3 and min.insync.replicas 2 must lose nothing
and double nothing, and the pipeline must only pause for the leader elections.

The cluster is private to this module (brokers 19392/19394/19396, controllers on +1; the other
3-broker test uses 19192-19197). The broker SIGKILLed is the coordinator of the consumer groups
and transactions (leader of the single __consumer_offsets partition), the hardest one to lose.
The longest stall, i.e. the longest time ClickHouse's row count stood still while events were
still due, is measured before and after the kill and printed in the "reliability figures"
section of the run (tests never assert on time; the scenario's deadlines are its only bound).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from private_kafka import kill_node, private_kafka
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

from pipeline.stack.kafka import KafkaStack
from producers.simulator.run import generate

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(480)]

PORTS = (19392, 19394, 19396)
RUN_S = 60.0
"""The sender is paced to last about this long; the kill lands once a quarter is in ClickHouse."""


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaStack]:
    kafka = private_kafka(tmp_path_factory.mktemp("kafka3"), PORTS, 3)
    try:
        kafka.start()
        kafka.wait_ready(kafka.stack.start_timeout_s)
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture
def pipeline_bootstrap(cluster: KafkaStack) -> str:
    return cluster.bootstrap_servers()


@pytest.fixture
def pipeline_topics() -> dict[str, int]:
    return {"partitions": 2, "replication_factor": 3, "min_insync_replicas": 2}


class StallWatch:
    """Samples ClickHouse's row count; the longest stretch without growth is the stall."""

    def __init__(self, line: Pipeline, total: int) -> None:
        self.line, self.total = line, total
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                count = sum(map(len, ch_event_ids(self.line).values()))
            except OSError:
                count = self.samples[-1][1] if self.samples else 0
            self.samples.append((time.monotonic(), count))
            if count >= self.total:
                return
            time.sleep(0.2)

    def longest_stall(self, since: float, until: float) -> float:
        """Longest time in [since, until] the count did not grow (while short of the total)."""
        longest, last_growth, last_count = 0.0, since, -1
        for at, count in self.samples:
            if at < since:
                last_count = count
                continue
            if at > until:
                break
            if count != last_count:
                longest = max(longest, at - last_growth)
                last_growth, last_count = at, count
        return longest


def _coordinator(kafka: KafkaStack) -> int:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": kafka.bootstrap_servers()}).list_topics(timeout=10)
    return int(meta.topics["__consumer_offsets"].partitions[0].leader)


def test_one_broker_of_three_killed_mid_run_loses_and_duplicates_nothing(
    pipeline: Pipeline, cluster: KafkaStack, record_property: Any,
) -> None:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": pipeline.kafka_bootstrap}).list_topics(timeout=10)
    assert len(meta.brokers) == 3
    for kind in ("ingest", "events"):
        parts = meta.topics[pipeline.topics[kind]].partitions.values()
        assert all(len(p.replicas) == 3 for p in parts), f"{kind} is not replicated 3 times"

    scripts = generate(4, "everything", seed=f"broker-kill-{uuid.uuid4().hex}")
    expected = expected_per_session(scripts)
    total = sum(expected.values())
    payloads = sum(len(s.steps) for s in scripts)
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts, rate=payloads / RUN_S)
        except BaseException as exc:
            outcome["error"] = exc

    watch = StallWatch(pipeline, total)
    started = time.monotonic()
    sender = threading.Thread(target=send)
    sender.start()
    watch.start()
    try:
        wait_until(lambda: bool(watch.samples) and watch.samples[-1][1] >= total // 4, 120,
                   "a quarter of the run in ClickHouse", interval_s=0.1)
        victim = _coordinator(cluster)
        node = next(n for n in cluster.nodes() if n.node_id == victim)
        kill_node(cluster, node)
        killed_at = time.monotonic()
        assert sender.is_alive(), "the kill came after the end of the run"
        sender.join(240)
        assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
        assert_exact(pipeline, expected)
    finally:
        watch.stop()
    settled_at = watch.samples[-1][0]
    before = watch.longest_stall(started, killed_at)
    after = watch.longest_stall(killed_at, settled_at)
    record_property("figure:killed_broker", f"node {victim} (group and transaction coordinator)")
    record_property("figure:longest_stall_before_kill_s", round(before, 2))
    record_property("figure:longest_stall_after_kill_s", round(after, 2))
    # No component died with the broker.
    assert all(c.alive() for c in pipeline.components.values()), {
        n: c.tail() for n, c in pipeline.components.items() if not c.alive()}
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), {
        n: (code, pipeline.components[n].tail()) for n, code in codes.items() if code != 0}
    places = downstream_places(pipeline)
    assert pipeline.recorder is not None
    assert pipeline.recorder.sessions_with_widgets() >= set(expected), "WebSocket saw too little"
    leaks = find_canaries(places, canaries_of(scripts))
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
