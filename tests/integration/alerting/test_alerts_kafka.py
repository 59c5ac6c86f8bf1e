"""`agentwatch alerts` against the real broker, a local webhook that fails at first, and aiosmtpd."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alerting_peers import Hook, Mailbox, alert, free_port
from confluent_kafka import Consumer, Producer

from pipeline.model import PATTERN_ALERT
from pipeline.serde import AvroSerde

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]],
            *, timestamp_ms: int = 0) -> None:
    """``timestamp_ms``: the records' publication time (0: now)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in values:
        producer.produce(topic, key=key, value=value, timestamp=timestamp_ms)
    assert producer.flush(30) == 0


def start(env: dict[str, str], out: Path) -> tuple[subprocess.Popen[bytes], Any]:
    log = out.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "alerts"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, log


async def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 45.0) -> None:
    for _ in range(int(timeout_s / 0.2)):
        if cond():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def stop(proc: subprocess.Popen[bytes], log: Any) -> int:
    proc.send_signal(signal.SIGTERM)
    for _ in range(150):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.2)
    else:
        proc.kill()
    log.close()
    return proc.wait(timeout=10)


async def test_alerts_are_delivered_once_retried_digested_and_dead_lettered(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path, webhook: Hook,
    smtp_server: Mailbox,
) -> None:
    patterns, dlq = kafka_topic("patterns", partitions=2), kafka_topic("dlq")
    serde = AvroSerde()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update({
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AGENTWATCH_TOPICS__PATTERNS": patterns, "AGENTWATCH_TOPICS__DLQ": dlq,
        "AGENTWATCH_ALERTS__CONSUMER_GROUP": f"alerts-{uuid.uuid4().hex}",
        "AGENTWATCH_ALERTS_HTTP__PORT": str(free_port()),
        "AGENTWATCH_ALERTS__CHANNELS": '["terminal", "webhook", "email"]',
        "AGENTWATCH_ALERTS__WEBHOOK_URL": webhook.url,
        "AGENTWATCH_ALERTS__WEBHOOK_BACKOFF_S": "0.05",
        "AGENTWATCH_ALERTS__WEBHOOK_MAX_ATTEMPTS": "4",
        "AGENTWATCH_ALERTS__SMTP_HOST": "127.0.0.1",
        "AGENTWATCH_ALERTS__SMTP_PORT": str(smtp_server.port),
        "AGENTWATCH_ALERTS__SMTP_TO": '["oncall@example.org"]',
        "AGENTWATCH_ALERTS__DIGEST_INTERVAL_S": "1",
        "AGENTWATCH_ALERTS__STATE_DIR": str(tmp_path / "state"),
        "AGENTWATCH_LOG_FORMAT": "text",
    })
    webhook.fail_first = 2  # the first alert needs two retries
    webhook.status_for["bad"] = 400  # refused for good: dead-lettered at once
    a1, a2, bad = alert("a1", session="s-1"), alert("a2", "critical", session="s-2"), alert("bad")
    # Published two hours ago (alerts.max_age_s is one hour): consumed, never delivered.
    produce(kafka_bootstrap, patterns, [(b"s-7", serde.encode(PATTERN_ALERT, alert("old", session="s-7")))],
            timestamp_ms=int(time.time() * 1000) - 7_200_000)
    produce(kafka_bootstrap, patterns, [
        (b"s-1", serde.encode(PATTERN_ALERT, a1)), (b"s-2", serde.encode(PATTERN_ALERT, a2)),
        (b"s-1", serde.encode(PATTERN_ALERT, a1)),  # a replayed alert: delivered once
        (b"s-1", serde.encode(PATTERN_ALERT, bad)), (b"s-9", b"not avro at all"),
    ])
    out = tmp_path / "alerts.log"
    proc, log = start(env, out)
    dead_file = tmp_path / "state" / "dead-letters.jsonl"

    def mailed() -> list[str]:
        return [line for m in smtp_server.messages
                for line in m.get_payload(decode=True).decode().splitlines()]  # type: ignore[union-attr]

    try:
        await wait_for(lambda: len(webhook.received) == 2 and dead_file.exists()
                       and sum("compile_fix_loop" in line and "session=" in line
                               for line in mailed()) == 3, "webhook, dead letter and digest")
        await asyncio.sleep(1.5)  # anything extra would show up now
    finally:
        code = await stop(proc, log)
    assert code == 0, out.read_text()
    assert sorted(b["alert_id"] for b in webhook.received) == ["a1", "a2"]
    assert webhook.posts == 2 + 2 + 1  # two 503s, two accepted, one 400
    dead = [json.loads(line) for line in dead_file.read_text().splitlines()]
    assert [(d["channel"], d["alert"]["alert_id"]) for d in dead] == [("webhook", "bad")]
    assert "400" in dead[0]["error"]
    digest_lines = [line for line in mailed() if line.startswith("[")]
    assert sorted(line.split()[2] for line in digest_lines) == ["compile_fix_loop"] * 3
    assert sum("session=s-2" in line for line in digest_lines) == 1
    printed = [line for line in out.read_text().splitlines() if "compile_fix_loop session=" in line]
    assert len(printed) == 3  # terminal channel: a1, a2, bad once each
    assert "session=s-7" not in out.read_text() and "stale alerts not delivered" in out.read_text()

    letters = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                        "auto.offset.reset": "earliest"})
    letters.subscribe([dlq])
    try:
        msgs = [m for m in letters.consume(num_messages=10, timeout=10) if m.error() is None]
    finally:
        letters.close()
    assert len(msgs) == 1
    assert serde.decode(msgs[0].value())[1]["source_topic"] == patterns

    # Offsets were committed after delivery: a restart delivers only what is new.
    proc, log = start(env, out)
    try:
        produce(kafka_bootstrap, patterns, [(b"s-3", serde.encode(PATTERN_ALERT, alert("a3")))])
        await wait_for(lambda: len(webhook.received) == 3, "the new alert")
        await asyncio.sleep(1.0)
    finally:
        assert await stop(proc, log) == 0
    assert sorted(b["alert_id"] for b in webhook.received) == ["a1", "a2", "a3"]
