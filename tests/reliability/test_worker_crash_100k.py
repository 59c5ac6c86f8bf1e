"""The issue's worker-crash scenario at full size: SIGKILL the worker twice during a run of more
than 100,000 events through the real stack (simulator -> collector -> worker -> ClickHouse and
archive), restarting it each time; the accounting stays exact and no canary leaks.

The run is ~210 long `realistic` sessions (~480 events each, no secrets, so the leak scan stays
affordable) plus 5 `everything` sessions that plant every canary kind. Each kill lands once the
current worker process has validated a fifth of the run, while the committed events topic is
still short of it (checked at each kill), so both land mid-stream with batches in flight.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from reliability_harness import Pipeline, wait_until
from reliability_support import (
    assert_exact,
    canaries_of,
    downstream_places,
    drive,
    expected_per_session,
    find_canaries,
    topic_messages,
)

from producers.simulator.run import generate
from producers.simulator.script import SessionScript

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(900)]

TARGET_EVENTS = 100_000
KILLS = 2


def _scripts() -> list[SessionScript]:
    run = uuid.uuid4().hex
    scripts = generate(5, "everything", seed=f"rel100k-canaries-{run}")
    long_sessions = generate(260, "realistic", seed=f"rel100k-{run}", edits=150, reads=150,
                             secrets=())
    total = sum(expected_per_session(scripts).values())
    for script in long_sessions:
        if total > TARGET_EVENTS:
            break
        scripts.append(script)
        total += sum(len(step.expect) for step in script.steps)
    assert total > TARGET_EVENTS, f"only {total} events generated"
    return scripts


def _committed_events(line: Pipeline) -> int:
    return len(topic_messages(line.kafka_bootstrap, line.topics["events"], committed_only=True))


def test_worker_sigkilled_twice_in_a_100k_event_run(pipeline: Pipeline) -> None:
    scripts = _scripts()
    expected = expected_per_session(scripts)
    total = sum(expected.values())
    worker = pipeline.components["worker"]
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    try:
        for kill in range(KILLS):
            # The metric counts what this worker process validated since it started.
            wait_until(lambda: worker.metric_sum("agentwatch_worker_messages_total{") >= total // 5,
                       300, f"the worker to validate a fifth of the run before kill {kill + 1}",
                       interval_s=0.1)
            worker.kill()
            published = _committed_events(pipeline)
            assert published < total, f"kill {kill + 1} came after the worker had published it all"
            worker.start()
    finally:
        sender.join(600)
    assert worker.exit_codes == [-9] * KILLS
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    # The events topic first (the worker's exactly-once), with a deadline sized for 100k events;
    # then every store, per session.
    wait_until(lambda: _committed_events(pipeline) >= total, 600,
               f"the committed events topic to hold all {total} events", interval_s=5.0)
    assert_exact(pipeline, expected)
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), {
        name: (code, pipeline.components[name].tail()) for name, code in codes.items() if code}
    canaries = canaries_of(scripts)
    assert len(canaries) >= 4, "the scenario planted no canaries: the leak check would prove nothing"
    leaks = find_canaries(downstream_places(pipeline), canaries)
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
