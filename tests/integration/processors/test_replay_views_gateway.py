"""A dashboard replay end to end: REST starts it on the gateway, the real worker rebuilds its
widgets from the replay topic, and the WebSocket client of the user who started it receives them
as widget updates of the replay view, equal to the live session's final widgets (same
comparison as test_replay_views_kafka.py); other users' clients and the live state see none."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aggregates_harness import worker_run
from aiohttp import web
from pydantic import SecretStr
from replay_support import TopicLog, comparable, go_live_and_archive, start_worker

from consumers.archive.testing import free_port
from consumers.gateway.app import create_app
from consumers.gateway.auth import Authenticator, Role
from consumers.gateway.context import GATEWAY
from pipeline.replays import view_session_id
from pipeline.settings import GatewaySettings, Settings
from processors.widgets.reducers import apply, new_state

pytestmark = pytest.mark.integration

SECRET = "replay-views-test-secret-0123456789"


async def messages_until(ws: aiohttp.ClientWebSocketResponse, done: Any,
                         within: float = 60.0) -> list[dict[str, Any]]:
    """Every message until ``done(all so far)`` holds."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while not done(seen):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"condition not met; got {[m['message_type'] for m in seen]}")
        msg = await ws.receive(timeout=remaining)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        seen.append(json.loads(msg.data))
    return seen


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet_s: float) -> list[dict[str, Any]]:
    """Whatever arrives until nothing has for ``quiet_s``."""
    seen: list[dict[str, Any]] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return seen
        seen.append(json.loads(msg.data))


def replay_widgets(messages: list[dict[str, Any]], replay_id: str) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m["message_type"] == "widget_update" and m.get("replay_id") == replay_id:
            latest[m["widget"]] = m
    return latest


async def test_a_rest_replay_streams_the_rebuilt_widgets_to_its_user(
    kafka_bootstrap: str, tmp_path: Path,
) -> None:
    with worker_run(kafka_bootstrap, tmp_path) as run:
        start_worker(run, idle_timeout_s=60.0)
        widgets = TopicLog(kafka_bootstrap, run.topic("widgets"))
        sid = f"gw-{uuid.uuid4().hex[:8]}"
        target = (tmp_path / "archive").as_uri()
        session, _env = await asyncio.to_thread(go_live_and_archive, run, target, tmp_path,
                                                widgets, sid)
        widgets.close()

        port = free_port()
        settings = Settings(
            kafka={"bootstrap_servers": kafka_bootstrap},
            topics={"widgets": run.topic("widgets"), "patterns": run.topic("patterns"),
                    "replay": run.topic("replay"), "partitions": run.partitions},
            gateway=GatewaySettings(port=port, jwt_secret=SecretStr(SECRET)),
            stack={"dir": tmp_path / "stack"}, archive={"target": target},
        )
        app = create_app(settings, clickhouse=False)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        gw = app[GATEWAY]
        auth = Authenticator(settings.gateway, SECRET)
        alice = {"Authorization": f"Bearer {auth.mint('alice', Role.VIEWER, 600)}"}
        root = {"Authorization": f"Bearer {auth.mint('root', Role.ADMIN, 600)}"}
        url = f"http://127.0.0.1:{port}"
        try:
            def live_final() -> bool:
                state = gw.store.get(sid)
                summary = state.widgets.get("session_summary") if state else None
                return summary is not None and summary.data["events"] == len(session)

            deadline = time.monotonic() + 30
            while not live_final():
                assert time.monotonic() < deadline, "the gateway never read the live session"
                await asyncio.sleep(0.1)

            def live_now() -> dict[str, dict[str, Any]]:
                held = gw.store.get(sid)
                assert held is not None
                return {name: {"session_id": sid, "widget": name, "data_json": w.data_json,
                               "version": w.seq, "timestamp": w.timestamp}
                        for name, w in held.widgets.items()}

            live = live_now()

            async with aiohttp.ClientSession() as http, \
                    http.ws_connect(f"{url.replace('http', 'ws')}/sessions/{sid}",
                                    headers=alice) as mine, \
                    http.ws_connect(f"{url.replace('http', 'ws')}/sessions/{sid}",
                                    headers=root) as admins:
                await messages_until(mine, lambda ms: ms and ms[-1]["message_type"] == "snapshot")
                await messages_until(admins, lambda ms: ms and ms[-1]["message_type"] == "snapshot")
                async with http.post(f"{url}/api/sessions/{sid}/replays", headers=alice,
                                     json={"speed": 100}) as resp:
                    assert resp.status == 201, await resp.text()
                    rep = await resp.json()
                rid = rep["replay_id"]
                view = view_session_id(rid)
                assert rep["view_session_id"] == view

                def rebuilt(ms: list[dict[str, Any]]) -> bool:
                    summary = replay_widgets(ms, rid).get("session_summary")
                    return summary is not None and summary["data"]["events"] == len(session)

                got = await messages_until(mine, rebuilt)
                got += await drain(mine, quiet_s=1.5)
                others = await drain(admins, quiet_s=0.5)
                async with http.get(f"{url}/api/replays/{rid}", headers=alice) as resp:
                    status = await resp.json()
                live_after = live_now()
                views_in_store = [s for s in gw.store.sessions if s.startswith("replay:")]
        finally:
            await runner.cleanup()

    assert status["state"] == "finished" and status["events"] == len(session)
    replayed = replay_widgets(got, rid)
    # REST has the same widgets (for a client that connects mid-replay).
    assert status["widgets"] == {name: {k: m[k] for k in ("data", "seq", "timestamp")}
                                 for name, m in replayed.items()}
    assert all(m["session_id"] == view for m in replayed.values())
    state = new_state(sid)
    for event in session:
        last_changed = apply(state, event)
    assert set(replayed) == set(live) - {"pattern_alerts"} and len(replayed) == 8
    for name, m in replayed.items():
        # The WebSocket message has no ``agent``; the records' agents are compared in
        # test_replay_views_kafka.py.
        as_record = {"session_id": view, "widget": name, "version": m["seq"],
                     "timestamp": m["timestamp"], "data_json": json.dumps(m["data"])}
        final = name in last_changed
        assert comparable(as_record, final) == comparable(live[name], final), name
    # The replay's events reached the session's sockets; its widgets only the starting user's.
    assert any(m["message_type"] == "replay_event" for m in got)
    assert any(m["message_type"] == "replay_event" for m in others)
    assert not [m for m in others if m["message_type"] == "widget_update"]
    # Nothing of the live session changed, and no replay view reached the live state.
    assert not [m for m in got if m["message_type"] == "widget_update" and not m.get("replay_id")]
    assert live_after == live
    assert views_in_store == []
