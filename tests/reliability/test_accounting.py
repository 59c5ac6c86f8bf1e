"""Exact accounting through the real stack: simulator -> collector -> worker -> ClickHouse + archive.

Per session: events the simulator's truth expects = distinct event_ids in ClickHouse (with no
duplicate rows) = lines of the compacted archive recording (with no duplicate lines); and none of
the planted canary secrets anywhere downstream of redaction (events, DLQ, widgets, patterns and
changelog topics, every ClickHouse table, every archive file, every component's log). The crash
variant SIGKILLs the worker mid-run and restarts it: the counts stay exact.
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

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SESSIONS = 5
RATE = 100.0
"""Payloads/s of the crash run: ~500 events take several seconds, so the kill lands mid-run."""


def _scripts() -> list[SessionScript]:
    # "everything" plants every canary kind and raises every pattern; a fresh seed per run gives
    # session ids no other run used.
    return generate(SESSIONS, "everything", seed=f"rel-{uuid.uuid4().hex}")


def _assert_no_canary(line: Pipeline, scripts: list[SessionScript]) -> None:
    canaries = canaries_of(scripts)
    assert len(canaries) >= 4, "the scenario planted no canaries: the leak check would prove nothing"
    ingest = topic_messages(line.kafka_bootstrap, line.topics["ingest"])
    # The raw ingest topic does carry them (the redactor's input): proves the scan can see them.
    assert find_canaries({"ingest": b"".join(m.value() for m in ingest)}, canaries)
    leaks = find_canaries(downstream_places(line), canaries)
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"


def _assert_clean_exit(line: Pipeline) -> None:
    codes = line.stop()
    assert all(code == 0 for code in codes.values()), {
        name: (code, line.components[name].tail()) for name, code in codes.items() if code != 0}


def test_full_path_accounting(pipeline: Pipeline) -> None:
    scripts = _scripts()
    drive(pipeline.collector_url, scripts)
    assert_exact(pipeline, expected_per_session(scripts))
    _assert_clean_exit(pipeline)
    _assert_no_canary(pipeline, scripts)


def test_worker_sigkill_mid_run_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    scripts = _scripts()
    total = sum(expected_per_session(scripts).values())
    worker = pipeline.components["worker"]
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts, rate=RATE)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    # Kill once the worker has processed part of the run, with the rest still coming.
    wait_until(lambda: worker.metric_sum("agentwatch_worker_messages_total{") >= total // 4,
               60, "the worker to process a quarter of the run", interval_s=0.05)
    worker.kill()
    assert worker.exit_codes == [-9]
    published = len(topic_messages(pipeline.kafka_bootstrap, pipeline.topics["events"],
                                   committed_only=True))
    assert sender.is_alive() and published < total, "the kill came after the end of the run"
    worker.start()
    sender.join(180)
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    assert_exact(pipeline, expected_per_session(scripts))
    _assert_clean_exit(pipeline)
    _assert_no_canary(pipeline, scripts)


def test_sinks_sigkill_mid_run_lose_and_duplicate_nothing(pipeline: Pipeline) -> None:
    scripts = _scripts()
    sinks = [pipeline.components["clickhouse_sink"], pipeline.components["archive_sink"]]
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts, rate=RATE)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    # Kill both sinks once they have written something, with the rest of the run still coming.
    written = "agentwatch_sink_records_written_total{"
    wait_until(lambda: all(s.metric_sum(written) >= 20 for s in sinks), 60,
               "both sinks to write their first records", interval_s=0.05)
    for sink in sinks:
        sink.kill()
    assert sender.is_alive(), "the kill came after the end of the run"
    for sink in sinks:
        assert sink.exit_codes == [-9]
        sink.start()
    sender.join(180)
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    assert_exact(pipeline, expected_per_session(scripts))
    _assert_clean_exit(pipeline)
    _assert_no_canary(pipeline, scripts)
