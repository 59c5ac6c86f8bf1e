"""Bad-input storm: malformed items into the collector and straight onto the ingest topic, while good
simulated traffic flows in the same run.

Proves: no component crashes; every collector item is refused with a reason (never a 5xx) or
accepted; every ingest record is either dead-lettered with an error kind or published (none
vanishes, none is doubled); the good sessions arrive exactly once in ClickHouse and the archive;
no planted secret reaches the DLQ, ClickHouse, the archive, any topic after ingest or any log.
"""

from __future__ import annotations

import random
import threading
import urllib.error
import urllib.request
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
from storm_items import HttpItem, RawItem, Secrets, http_items, raw_items

from pipeline.serde import AvroSerde
from producers.simulator.run import generate

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def _post(url: str, item: HttpItem) -> tuple[int, bytes]:
    req = urllib.request.Request(url + item.path, data=item.body, method="POST",
                                 headers={"Content-Type": item.content_type, **dict(item.headers)})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _produce_raw(bootstrap: str, topic: str, items: list[RawItem]) -> dict[tuple[int, int], RawItem]:
    """(partition, offset) -> item, from the delivery reports."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "compression.type": "zstd", "message.max.bytes": 16 * 1024 * 1024,
                         "partitioner": "murmur2_random"})
    where: dict[tuple[int, int], RawItem] = {}
    failures: list[str] = []

    def report(item: RawItem) -> Any:
        def done(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(f"{item.kind}: {err}")
            else:
                where[(msg.partition(), msg.offset())] = item
        return done

    for item in items:
        producer.produce(topic, key=item.key, value=item.value, on_delivery=report(item))
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not failures, failures
    return where


Where = tuple[int, int]


def _ingest_accounting(
    line: Pipeline,
) -> tuple[dict[Where, Any], dict[Where, dict[str, Any]], list[Where]]:
    """Every ingest record -> its dead letter, or its event on the events topic. Returns
    (ingest records, dead letters by source position, records neither dead-lettered nor published)."""
    serde = AvroSerde()
    ingest = {(m.partition(), m.offset()): m for m in topic_messages(
        line.kafka_bootstrap, line.topics["ingest"])}
    letters: dict[tuple[int, int], dict[str, Any]] = {}
    for m in topic_messages(line.kafka_bootstrap, line.topics["dlq"], committed_only=True):
        _name, letter = serde.decode(m.value())
        if letter["source_topic"] == line.topics["ingest"]:
            where = (letter["source_partition"], letter["source_offset"])
            assert where not in letters, f"dead letter of {where} duplicated"
            letters[where] = letter
    published = {serde.decode_event(m.value())["event_id"] for m in topic_messages(
        line.kafka_bootstrap, line.topics["events"], committed_only=True)}
    missing = []
    for where, msg in ingest.items():
        if where in letters:
            continue
        try:
            event_id = serde.decode_event(msg.value())["event_id"]
        except Exception:
            missing.append(where)
            continue
        if event_id not in published:
            missing.append(where)
    return ingest, letters, missing


def test_bad_input_storm(pipeline: Pipeline) -> None:
    rng = random.Random(uuid.uuid4().hex)
    secrets = Secrets.fresh(rng)
    good = generate(2, "secrets", seed=f"storm-{uuid.uuid4().hex}")
    outcome: dict[str, Any] = {}

    def send_good() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, good, rate=100.0)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send_good)
    sender.start()

    answers = {item.kind: (item, *_post(pipeline.collector_url, item))
               for item in http_items(secrets)}
    raw = raw_items(secrets, rng)
    placed = _produce_raw(pipeline.kafka_bootstrap, pipeline.topics["ingest"], raw)
    sender.join(180)
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    assert len(answers) + len(raw) >= 20

    server_errors = {k: (s, b[:200]) for k, (_i, s, b) in answers.items() if s >= 500}
    assert not server_errors, f"the collector answered 5xx: {server_errors}"
    not_refused = {k: s for k, (i, s, _b) in answers.items() if i.refuse and not 400 <= s < 500}
    assert not not_refused, f"malformed items accepted: {not_refused}"
    no_reason = {k: b[:200] for k, (_i, s, b) in answers.items() if s >= 400 and not b.strip()}
    assert not no_reason, f"refused without a reason: {no_reason}"

    # Good traffic: exact, as if no storm had happened.
    assert_exact(pipeline, expected_per_session(good), all_sessions=False)

    def accounted() -> bool:
        _ingest, letters, missing = _ingest_accounting(pipeline)
        return not missing and all(w in letters for w, item in placed.items() if item.expect == "dlq")

    wait_until(accounted, 120, "every ingest record to be dead-lettered or published")
    _ingest, letters, missing = _ingest_accounting(pipeline)
    assert not missing
    for where, item in placed.items():
        letter = letters.get(where)
        if item.expect == "dlq":
            assert letter is not None, f"{item.kind} not dead-lettered"
        if letter is not None:
            assert letter["error_kind"] and letter["error_message"], item.kind
            # "internal" means the worker hit an exception it did not expect: a bug.
            assert letter["error_kind"] != "internal", (item.kind, letter["error_message"])
            if item.error_kind:
                assert letter["error_kind"] == item.error_kind, (item.kind, letter["error_kind"])

    for component in pipeline.components.values():
        assert component.alive(), f"{component.name} died:\n{component.tail()}"
    assert pipeline.components["collector"].health().get("healthy")
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), codes

    canaries = secrets.values() | canaries_of(good)
    leaks = find_canaries(downstream_places(pipeline), canaries)
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
