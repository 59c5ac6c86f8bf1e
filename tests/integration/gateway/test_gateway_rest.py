"""REST against real ClickHouse: paged events, search narrowed to a viewer's sessions, named
queries' RBAC, replay start/pause/stop with events on the WebSocket, and the audit log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from gateway_support import GatewayUnderTest, receive_json, receive_until, widget_record

from pipeline.migrations import apply_migrations, client
from pipeline.settings import ClickHouseSettings

pytestmark = pytest.mark.integration


def insert_events(ch: ClickHouseSettings, db: str, session_id: str, n: int, start_us: int) -> None:
    conn = client(ch, db)
    rows = []
    for i in range(n):
        ts = start_us + i * 200_000
        rows.append((datetime.fromtimestamp(ts // 1_000_000, UTC).replace(tzinfo=None), ts,
                     f"00000000-0000-4000-8000-{i:012d}", session_id,
                     "file.write" if i % 2 else "command.executed", "claude-code",
                     "error" if i % 5 == 0 else "info", "hook",
                     json.dumps({"user_id": "x"}), "dev.agentwatch.FileEvent",
                     json.dumps({"path": f"src/f{i}.py", "lines_added": i}), f"src/f{i}.py", i))
    conn.execute("INSERT INTO telemetry_events (timestamp, ts_us, event_id, session_id, event_type,"
                 " agent, severity, source, metadata, payload_type, payload, file_path, kafka_offset) VALUES",
                 rows)
    conn.disconnect()


async def test_rest_events_search_queries_replay_and_audit(
        start_gateway: Callable[..., Any], clickhouse: ClickHouseSettings, clickhouse_db: str,
        unique_name: Callable[[str], str]) -> None:
    apply_migrations(clickhouse, clickhouse_db)
    mine, theirs = unique_name("mine"), unique_name("theirs")
    start_us = (int(time.time()) - 600) * 1_000_000
    insert_events(clickhouse, clickhouse_db, mine, 25, start_us)
    insert_events(clickhouse, clickhouse_db, theirs, 5, start_us)
    gut: GatewayUnderTest = await start_gateway(clickhouse_db=clickhouse_db, audit_flush_s=0.2,
                                                replay_to_kafka=False)
    gut.produce([widget_record(mine, "session_summary", 1, {"user_id": "alice"}),
                 widget_record(theirs, "session_summary", 1, {"user_id": "bob"})])
    await gut.wait_caught_up()
    await gut.wait_for("sessions", lambda: len(gut.gw.store.sessions) == 2)
    alice = gut.headers("alice")
    async with aiohttp.ClientSession() as http:
        # Paged events, newest first, cursor to the end; every event exactly once.
        seen: list[str] = []
        cursor = None
        while True:
            url = f"{gut.url}/api/sessions/{mine}/events?limit=10" + (f"&cursor={cursor}" if cursor else "")
            async with http.get(url, headers=alice) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            seen += [e["event_id"] for e in page["events"]]
            ts = [e["ts_us"] for e in page["events"]]
            assert ts == sorted(ts, reverse=True)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 25 == len(set(seen))
        async with http.get(f"{gut.url}/api/sessions/{mine}/events?severity=error", headers=alice) as resp:
            assert {e["severity"] for e in (await resp.json())["events"]} == {"error"}
        async with http.get(f"{gut.url}/api/sessions/{theirs}/events", headers=alice) as resp:
            assert resp.status == 403

        # Search: a viewer only ever gets rows of their own sessions; an admin gets both.
        async with http.get(f"{gut.url}/api/search", headers=alice,
                            params={"q": "event_type:file.write", "since": "1h"}) as resp:
            assert resp.status == 200, await resp.text()
            rows = (await resp.json())["events"]
        assert rows and {r["session_id"] for r in rows} == {mine}
        async with http.get(f"{gut.url}/api/search", headers=gut.headers("root", "admin"),
                            params={"q": "event_type:file.write", "since": "1h"}) as resp:
            assert {r["session_id"] for r in (await resp.json())["events"]} == {mine, theirs}
        async with http.get(f"{gut.url}/api/search", headers=alice, params={"q": "(("}) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "bad_query"

        # Named queries: listed; a viewer must name one of their sessions.
        async with http.get(f"{gut.url}/api/queries", headers=alice) as resp:
            names = [q["name"] for q in (await resp.json())["queries"]]
        assert "most_modified_files" in names
        async with http.get(f"{gut.url}/api/queries/most_modified_files", headers=alice) as resp:
            assert resp.status == 403
        async with http.get(f"{gut.url}/api/queries/most_modified_files", headers=alice,
                            params={"session": theirs, "since": "1h"}) as resp:
            assert resp.status == 403
        async with http.get(f"{gut.url}/api/queries/most_modified_files", headers=alice,
                            params={"session": mine, "since": "1h"}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["columns"]

        # Replay from ClickHouse (the archive folder is empty): events reach the session's socket.
        async with http.ws_connect(f"{gut.ws_url}/sessions/{mine}", headers=alice) as ws:
            await receive_json(ws)
            async with http.post(f"{gut.url}/api/sessions/{mine}/replays", headers=alice,
                                 json={"speed": 1, "from": "+1s"}) as resp:
                assert resp.status == 201, await resp.text()
                rep = await resp.json()
            first, _ = await receive_until(ws, lambda m: m["message_type"] == "replay_event")
            assert first["replay_id"] == rep["replay_id"]
            assert first["event"]["metadata"]["replay"] == "1"
            assert first["event"]["timestamp"] >= start_us + 1_000_000
            async with http.post(f"{gut.url}/api/replays/{rep['replay_id']}/pause", headers=alice) as resp:
                paused = await resp.json()
            assert paused["state"] == "paused" and paused["events"] < paused["total"]
            await asyncio.sleep(0.6)
            async with http.get(f"{gut.url}/api/replays/{rep['replay_id']}", headers=alice) as resp:
                still = await resp.json()
            assert (still["state"], still["events"]) == ("paused", paused["events"])
            async with http.post(f"{gut.url}/api/replays/{rep['replay_id']}/resume", headers=alice) as resp:
                assert (await resp.json())["state"] == "running"
            await receive_until(ws, lambda m: m["message_type"] == "replay_event"
                                and m["index"] > paused["events"])
            async with http.get(f"{gut.url}/api/replays/{rep['replay_id']}",
                                headers=gut.headers("bob")) as resp:
                assert resp.status == 404
            async with http.delete(f"{gut.url}/api/replays/{rep['replay_id']}", headers=alice) as resp:
                assert (await resp.json())["state"] == "stopped"
            async with http.post(f"{gut.url}/api/sessions/{theirs}/replays", headers=alice,
                                 json={}) as resp:
                assert resp.status == 403

        # Audit: every access above is in ClickHouse with user, session, address and agent.
        await asyncio.sleep(0.5)
        await gut.gw.audit.flush()
        async with http.get(f"{gut.url}/api/audit", headers=gut.headers("root", "admin"),
                            params={"user": "alice", "limit": "1000"}) as resp:
            entries = (await resp.json())["entries"]
        kinds = {(e["action"], e["access_type"], e["session_id"]) for e in entries}
        assert ("telemetry.accessed", "dashboard_view", mine) in kinds
        assert ("telemetry.accessed", "rest_events", mine) in kinds
        assert ("telemetry.accessed", "replay", mine) in kinds
        assert ("telemetry.accessed", "rest_events", theirs) not in kinds
        assert all(e["client_addr"] == "127.0.0.1" and "aiohttp" in e["user_agent"]
                   for e in entries)
        async with http.get(f"{gut.url}/api/audit", headers=alice) as resp:
            assert resp.status == 403
