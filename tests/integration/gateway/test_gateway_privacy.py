"""Issue 11's acceptance test: two users; A exports (all and only A's data), sets consent, erases;
afterwards no query, archive listing or widget snapshot (running or restarted gateway) has any
of A's data, B's is untouched, and the audit log shows the export and the erasure."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gateway_support import SECRET, GatewayUnderTest, free_port, widget_record
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from consumers.archive.jsonl import event_to_line
from consumers.archive.layout import recording_key, segment_key
from consumers.archive.manifest import Manifest, write_manifest
from consumers.archive.targets import FileTarget
from consumers.clickhouse.rows import EVENT_COLUMNS, event_row
from consumers.gateway.app import create_app
from consumers.gateway.feed import WidgetFeed
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.state import WidgetStore
from pipeline.migrations import apply_migrations, client
from pipeline.model import new_event
from pipeline.privacy import ConsentStore, Telemetry
from pipeline.serde import AvroSerde
from pipeline.settings import ClickHouseSettings, GatewaySettings, Settings

pytestmark = pytest.mark.integration

TABLES = ("telemetry_events", "sessions", "pattern_alerts", "dead_letters")


def _events(session: str, user: str, n: int, start_us: int) -> list[dict[str, Any]]:
    out = [new_event("session.started", session, {"cwd": f"/home/{user}/proj"}, timestamp_us=start_us,
                     metadata={"user_id": user})]
    for i in range(n):
        out.append(new_event("file.write", session, {"path": f"src/{user}_secret_{i}.py",
                                                     "lines_added": i},
                             timestamp_us=start_us + (i + 1) * 1000, metadata={"user_id": user}))
    return out


def _load_clickhouse(conn: Any, evs: list[dict[str, Any]]) -> None:
    conn.execute(f"INSERT INTO telemetry_events ({', '.join(EVENT_COLUMNS)}) VALUES",
                 [event_row(e, "agent.telemetry.events", 0, i) for i, e in enumerate(evs)])
    sessions = sorted({e["session_id"] for e in evs})
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    now_us = int(time.time()) * 1_000_000
    conn.execute("INSERT INTO sessions (session_id, agent, started_at, started_us, last_event_at, "
                 "last_event_us, version) VALUES",
                 [(s, "claude-code", now, now_us, now, now_us, 1) for s in sessions])
    conn.execute(
        "INSERT INTO pattern_alerts (detected_at, detected_us, alert_id, pattern, session_id, "
        "agent, severity, window_start, window_start_us, window_end_us, evidence_event_ids, "
        "message, suggested_mitigation, kafka_topic, kafka_partition, kafka_offset) VALUES",
        [(now, now_us, f"al-{s}", "retry_storm", s, "claude-code", "warning", now, now_us, now_us,
          [], "m", "", "agent.telemetry.patterns", 0, i) for i, s in enumerate(sessions)])
    conn.execute(
        "INSERT INTO dead_letters (first_seen, first_seen_us, stage, error_kind, error_message, "
        "source_topic, source_partition, source_offset, attempts, session_id, event_id, "
        "original_text, original_bytes, original_truncated, kafka_topic, kafka_partition, "
        "kafka_offset) VALUES",
        [(now, now_us, "validate", "schema_violation", "bad", "ingest", 0, i, 1, s, "", "", "", 0,
          "agent.telemetry.dlq", 0, i) for i, s in enumerate(sessions)])


def _archive(target: FileTarget, evs: list[dict[str, Any]], *, compacted: bool) -> None:
    sid = evs[0]["session_id"]
    body = b"".join(event_to_line(e) for e in evs)
    if compacted:
        key = recording_key(sid, evs[0]["timestamp"])
        target.put(key, body)
        write_manifest(target, Manifest(sid, key, len(evs), evs[0]["timestamp"],
                                        evs[-1]["timestamp"], True, len(body), 1))
    else:
        target.put(segment_key(sid, 0, 3), body)


def _counts(conn: Any, sessions: list[str]) -> dict[str, int]:
    return {t: int(conn.execute(f"SELECT count() FROM {t} WHERE session_id IN %(s)s",
                                {"s": tuple(sessions)})[0][0]) for t in TABLES}


async def _snapshot(settings: Settings) -> set[str]:
    """What a restarted gateway rebuilds from the widgets topic."""
    store = WidgetStore()
    feed = WidgetFeed(settings.kafka, settings.topics.widgets, None, store=store,
                      serde=AvroSerde(), metrics=GatewayMetrics(CollectorRegistry()))
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.status.caught_up_event.wait(), 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return set(store.sessions)


async def test_export_then_erase_one_user_of_two(
        kafka_bootstrap: str, kafka_topic: Callable[..., str], clickhouse: ClickHouseSettings,
        clickhouse_db: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    apply_migrations(clickhouse, clickhouse_db)
    conn = client(clickhouse, clickhouse_db)
    a1, a2, b1 = unique_name("a1"), unique_name("a2"), unique_name("b1")
    start_us = (int(time.time()) - 600) * 1_000_000
    ev_a1, ev_a2 = _events(a1, "alice", 6, start_us), _events(a2, "alice", 3, start_us)
    ev_b1 = _events(b1, "bob", 4, start_us)
    _load_clickhouse(conn, ev_a1 + ev_a2 + ev_b1)
    target = FileTarget(tmp_path / "archive")
    _archive(target, ev_a1, compacted=True)
    _archive(target, ev_a2, compacted=False)
    _archive(target, ev_b1, compacted=True)
    bob_keys = [k for k in target.list_keys("") if b1 in k]
    assert len(bob_keys) == 2

    widgets = kafka_topic("priv.widgets", partitions=2, **{"cleanup.policy": "compact"})
    port = free_port()
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap},
        topics={"widgets": widgets, "patterns": kafka_topic("priv.patterns"),
                "replay": kafka_topic("priv.replay"), "partitions": 2},
        clickhouse=clickhouse.model_copy(update={"database": clickhouse_db}),
        gateway=GatewaySettings(port=port, jwt_secret=SecretStr(SECRET), audit_flush_s=0.2,
                                replay_to_kafka=False),
        # A worker app id of its own: no tombstone may reach a shared changelog topic.
        worker={"app_id": unique_name("privworker")},
        stack={"dir": tmp_path / "stack"},
        archive={"target": target.describe()},
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gut = GatewayUnderTest(f"http://127.0.0.1:{port}", settings, app, widgets,
                           settings.topics.patterns, kafka_bootstrap)
    try:
        gut.produce([widget_record(s, w, seq, {"user_id": u} if w == "session_summary" else {})
                     for s, u in ((a1, "alice"), (a2, "alice"), (b1, "bob"))
                     for seq, w in enumerate(("session_summary", "cost", "error_log"), 1)])
        await gut.wait_caught_up()
        await gut.wait_for("three sessions", lambda: len(gut.gw.store.sessions) == 3)
        alice = gut.headers("alice")
        async with aiohttp.ClientSession() as http:
            # -- export: all and only alice's data, manifest last, hash of the records.
            async with http.get(f"{gut.url}/api/user/telemetry/export?format=json",
                                headers=alice) as resp:
                assert resp.status == 200
                body = await resp.read()
            lines = body.decode().splitlines()
            records = [json.loads(x) for x in lines]
            manifest = records[-1]
            assert manifest["record_type"] == "manifest"
            data = records[:-1]
            assert manifest["data"]["sha256"] == hashlib.sha256(
                "".join(x + "\n" for x in lines[:-1]).encode()).hexdigest()
            kinds = {r["record_type"] for r in data}
            assert {"event", "session", "alert", "dead_letter"} <= kinds
            exported_ids = {r["data"]["event_id"] for r in data if r["record_type"] == "event"}
            assert exported_ids == {str(e["event_id"]) for e in ev_a1 + ev_a2}
            assert {r["data"]["session_id"] for r in data if "session_id" in r["data"]
                    and r["record_type"] != "audit"} == {a1, a2}
            assert b"bob" not in b"".join(x.encode() for x in lines[:-1])
            async with http.get(f"{gut.url}/api/user/telemetry/export?format=csv",
                                headers=alice) as resp:
                assert resp.status == 200
                rows = list(csv.reader(io.StringIO(await resp.text())))
            assert rows[0] == ["record_type", "session_id", "timestamp_us", "data"]
            assert sum(1 for r in rows if r[0] == "event") == len(ev_a1) + len(ev_a2)
            assert rows[-1][0] == "manifest"

            # -- consent: stored durably, read back.
            async with http.put(f"{gut.url}/api/user/privacy", headers=alice,
                                json={"telemetry": "disabled", "retention_days": 30}) as resp:
                assert resp.status == 200
            pref = ConsentStore(conn, clickhouse_db).load_one("alice")
            assert pref is not None and pref.telemetry is Telemetry.DISABLED
            assert pref.retention_days == 30

            # -- a viewer cannot erase someone else.
            async with http.delete(f"{gut.url}/api/user/telemetry?user=alice",
                                   headers=gut.headers("bob")) as resp:
                assert resp.status == 403

            # -- erasure, twice (idempotent).
            async with http.delete(f"{gut.url}/api/user/telemetry", headers=alice) as resp:
                assert resp.status == 200
                first = await resp.json()
            assert first["verified"] and first["sessions"] == 2
            assert first["tombstones"] > 0 and first["archive_objects"] == 3
            async with http.delete(f"{gut.url}/api/user/telemetry", headers=alice) as resp:
                assert resp.status == 200
                second = await resp.json()
            assert second["verified"] and second["archive_objects"] == 0

        # Nothing of alice's remains anywhere; bob's is untouched.
        assert _counts(conn, [a1, a2]) == dict.fromkeys(TABLES, 0)
        assert _counts(conn, [b1]) == {"telemetry_events": len(ev_b1), "sessions": 1,
                                       "pattern_alerts": 1, "dead_letters": 1}
        assert conn.execute("SELECT count() FROM telemetry_events WHERE "
                            "visitParamExtractString(metadata, 'user_id') = 'alice'")[0][0] == 0
        assert sorted(target.list_keys("")) == sorted(bob_keys)
        await gut.wait_for("running gateway forgets alice",
                           lambda: set(gut.gw.store.sessions) == {b1})
        assert await _snapshot(settings) == {b1}

        # The audit log shows the export and the erasure, without the erased content.
        await gut.gw.audit.flush()
        audit = conn.execute("SELECT action, access_type, resource FROM audit_log "
                             "WHERE user_id = 'alice' ORDER BY at_us")
        actions = [r[0] for r in audit]
        assert "telemetry.exported" in actions and "privacy.updated" in actions
        assert actions.count("telemetry.deleted") == 2
        erasures = [r[2] for r in audit if r[0] == "telemetry.deleted"]
        assert all("secret" not in r and "/home/alice" not in r for r in erasures)
        assert json.loads(erasures[0])["verified"] is True
    finally:
        await runner.cleanup()
        conn.disconnect()
