"""Opt-out at the door, end to end: consent in a fresh ClickHouse database, the collector
in-process against the real broker; an opted-out user's events never reach Kafka, and a change
made while the collector runs takes effect on the next refresh."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from collector_support import consume, running_collector, topic_size

from pipeline.migrations import apply_migrations, client
from pipeline.privacy import ConsentStore, Telemetry
from pipeline.settings import REPO_ROOT, ClickHouseSettings, load_settings
from producers.collector.app import INTAKE

pytestmark = pytest.mark.integration

CASES: dict[str, dict[str, Any]] = json.loads(
    (REPO_ROOT / "tests" / "data" / "claude_code_hooks.json").read_text())
SESSION = ("session_start", "pre_bash", "post_bash_test", "session_end")


async def test_opted_out_users_never_reach_kafka(
        tmp_path: Path, kafka_bootstrap: str, kafka_topic: Callable[..., str],
        clickhouse: ClickHouseSettings, clickhouse_db: str) -> None:
    apply_migrations(clickhouse, clickhouse_db)
    conn = client(clickhouse, clickhouse_db)
    store = ConsentStore(conn, clickhouse_db)
    store.set("bob", telemetry=Telemetry.DISABLED, by="test")
    topic = kafka_topic("consent.ingest", partitions=2)
    settings = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap}, topics={"ingest": topic},
        spool={"dir": str(tmp_path / "spool")},
        collector={"inbox_dir": str(tmp_path / "inbox"), "otlp_workers": 0},
        clickhouse=clickhouse.model_copy(update={"database": clickhouse_db}),
        privacy={"user_id": "alice", "refresh_s": 0.2})

    async def post_session(http: aiohttp.ClientSession, url: str, user: str | None) -> None:
        headers = {"X-Agentwatch-User": user} if user else {}
        for name in SESSION:
            resp = await http.post(url, json=CASES[name], headers=headers)
            assert resp.status == 200

    try:
        async with running_collector(settings) as collector, aiohttp.ClientSession() as http:
            gate = collector.server.app[INTAKE].gate
            assert gate is not None
            url = collector.url("/hooks")
            await post_session(http, url, "bob")      # known at start: dropped
            await post_session(http, url, None)       # alice (configured id): kept
            store.set("carol", telemetry=Telemetry.DISABLED, by="test")
            deadline = time.monotonic() + 30
            while gate.mode("carol") is not Telemetry.DISABLED:
                assert time.monotonic() < deadline, "the consent change never reached the collector"
                await asyncio.sleep(0.05)
            await post_session(http, url, "carol")    # changed while running: dropped
            assert await asyncio.to_thread(collector.publisher.flush, 30) == 0
            dropped = collector.metric("agentwatch_collector_consent_dropped_requests_total",
                                       endpoint="/hooks")
        assert dropped == 2 * len(SESSION)
        size = await asyncio.to_thread(topic_size, kafka_bootstrap, topic)
        messages = await asyncio.to_thread(consume, kafka_bootstrap, topic, size)
        assert size > 0 and len(messages) == size
        assert {m.event["metadata"]["user_id"] for m in messages} == {"alice"}
    finally:
        conn.disconnect()
