"""The gateway against the real broker: snapshot, ordered sequenced updates, filters, subscribe,
re-sync on a gap, the overview socket, and every way a handshake must be refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
from gateway_support import (
    SECRET,
    GatewayUnderTest,
    receive_json,
    receive_until,
    widget_record,
)

pytestmark = pytest.mark.integration


def summary(owner: str | None, events: int = 1, status: str = "in_progress") -> dict[str, Any]:
    return {"status": status, "counts": {"errors": 0}, "events": events, "started_at": 1,
            "last_event": {"timestamp": 1}, "agents": ["claude-code"], "user_id": owner}


def errors(*entries: tuple[str, str, str]) -> dict[str, Any]:
    errs = [{"event_id": f"e{i}", "t": i, "severity": sev, "agent": agent, "type": "x",
             "message": msg, "file": None, "line": None, "status": "open"}
            for i, (sev, agent, msg) in enumerate(entries)]
    return {"errors": errs, "open": len(errs)}


async def seeded(start_gateway: Callable[..., Any], sid: str, owner: str | None) -> GatewayUnderTest:
    gut: GatewayUnderTest = await start_gateway()
    gut.produce([
        widget_record(sid, "session_summary", 1, summary(owner)),
        widget_record(sid, "session_progress", 2, {"completion_pct": 10.0, "current_phase": "planning"}),
        widget_record(sid, "error_log", 3, errors(("error", "a1", "boom"))),
    ])
    await gut.wait_caught_up()
    await gut.wait_for("seeded session", lambda: (s := gut.gw.store.get(sid)) is not None
                       and s.last_seq == 3)
    return gut


async def test_snapshot_then_ordered_updates_with_sequence_numbers(
        start_gateway: Callable[..., Any], unique_name: Callable[[str], str]) -> None:
    sid = unique_name("sess")
    gut = await seeded(start_gateway, sid, "alice")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gut.ws_url}/sessions/{sid}", headers=gut.headers("alice")) as ws:
        snap = await receive_json(ws)
        assert snap["message_type"] == "snapshot"
        assert snap["session_id"] == sid and snap["seq"] == 3
        assert {w: v["seq"] for w, v in snap["widgets"].items()} == {
            "session_summary": 1, "session_progress": 2, "error_log": 3}
        assert snap["widgets"]["session_progress"]["data"]["completion_pct"] == 10.0
        assert snap["overview"]["user_id"] == "alice"

        updates = [widget_record(sid, "session_progress", 3 + i, {"completion_pct": 10.0 + i})
                   for i in range(1, 6)]
        updates.append(widget_record(sid, "cost", 9, {"total_usd": 0.5}))
        gut.produce(updates)
        got: list[dict[str, Any]] = []
        while len(got) < 6:
            msg = await receive_json(ws)
            assert msg["message_type"] == "widget_update", msg
            got.append(msg)
        # In order, each with its sequence number; nothing coalesced for a client that keeps up.
        assert [m["seq"] for m in got] == [4, 5, 6, 7, 8, 9]
        assert [m["widget"] for m in got] == ["session_progress"] * 5 + ["cost"]
        assert got[4]["data"] == {"completion_pct": 15.0}
        assert all(m["session_id"] == sid and isinstance(m["timestamp"], int) for m in got)

        # A stale duplicate (seq not newer) is never forwarded.
        gut.produce([widget_record(sid, "cost", 8, {"total_usd": 99.0}),
                     widget_record(sid, "cost", 10, {"total_usd": 0.75})])
        msg = await receive_json(ws)
        assert (msg["widget"], msg["seq"], msg["data"]) == ("cost", 10, {"total_usd": 0.75})


async def test_filter_subscribe_unsubscribe_and_bad_messages(
        start_gateway: Callable[..., Any], unique_name: Callable[[str], str]) -> None:
    sid = unique_name("sess")
    gut = await seeded(start_gateway, sid, "alice")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gut.ws_url}/sessions/{sid}", headers=gut.headers("alice")) as ws:
        await receive_json(ws)  # snapshot
        await ws.send_json({"action": "filter", "widget": "error_log",
                            "criteria": {"severity": ["critical", "warning"], "agent": "a2"}})
        ack, _ = await receive_until(ws, lambda m: m["message_type"] == "filtered")
        assert ack["criteria"] == {"severity": ["critical", "warning"], "agent": ["a2"]}
        snap, _ = await receive_until(ws, lambda m: m["message_type"] == "snapshot")
        assert snap["widgets"]["error_log"]["data"]["errors"] == []

        gut.produce([widget_record(sid, "error_log", 4, errors(
            ("error", "a1", "x"), ("warning", "a2", "keep me"), ("critical", "a1", "other agent"),
            ("critical", "a2", "keep me too")))])
        upd, _ = await receive_until(ws, lambda m: m["message_type"] == "widget_update")
        assert upd["widget"] == "error_log" and upd["seq"] == 4
        assert [e["message"] for e in upd["data"]["errors"]] == ["keep me", "keep me too"]
        assert upd["data"]["open"] == 2 and upd["data"]["filtered"] is True

        # Bad input: an error each time, and the socket stays usable.
        for bad in ("not json", '{"action":"fly"}', '{"action":"subscribe","widgets":["nope"]}',
                    '["list"]', '{"action":"filter","widget":"cost","criteria":{}}'):
            await ws.send_str(bad)
            err = await receive_json(ws)
            assert err["message_type"] == "error", (bad, err)
        await ws.send_json({"action": "ping"})
        assert (await receive_json(ws))["message_type"] == "pong"

        # Narrow to cost only: other widgets stop, cost keeps coming.
        await ws.send_json({"action": "subscribe", "widgets": ["cost"]})
        sub, _ = await receive_until(ws, lambda m: m["message_type"] == "subscribed")
        assert sub["widgets"] == ["cost"]
        gut.produce([widget_record(sid, "session_progress", 5, {"completion_pct": 50.0}),
                     widget_record(sid, "cost", 6, {"total_usd": 1.0})])
        upd, before = await receive_until(ws, lambda m: m["message_type"] == "widget_update")
        assert (upd["widget"], upd["seq"]) == ("cost", 6)
        assert all(m["message_type"] != "widget_update" for m in before)
        await ws.send_json({"action": "unsubscribe", "widgets": ["cost"]})
        sub, _ = await receive_until(ws, lambda m: m["message_type"] == "subscribed")
        assert sub["widgets"] == []
        assert not ws.closed


async def test_gap_in_sequence_resyncs_subscribers(
        start_gateway: Callable[..., Any], unique_name: Callable[[str], str]) -> None:
    sid = unique_name("sess")
    gut = await seeded(start_gateway, sid, "alice")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gut.ws_url}/sessions/{sid}", headers=gut.headers("alice")) as ws:
        await receive_json(ws)
        # A worker restart skips 1000 numbers: the gateway re-syncs with a full snapshot.
        gut.produce([widget_record(sid, "cost", 1004, {"total_usd": 2.0})])
        snap = await receive_json(ws)
        assert snap["message_type"] == "snapshot" and snap["resync"] is True
        assert snap["seq"] == 1004 and snap["widgets"]["cost"]["seq"] == 1004
        await ws.send_json({"action": "resync"})
        again = await receive_json(ws)
        assert again["message_type"] == "snapshot" and again["resync"] is True


async def test_overview_lists_only_own_sessions_and_updates(
        start_gateway: Callable[..., Any], unique_name: Callable[[str], str]) -> None:
    mine, theirs, orphan = unique_name("a"), unique_name("b"), unique_name("c")
    gut: GatewayUnderTest = await start_gateway()
    gut.produce([widget_record(mine, "session_summary", 1, summary("alice")),
                 widget_record(theirs, "session_summary", 1, summary("bob")),
                 widget_record(orphan, "session_summary", 1, summary(None))])
    await gut.wait_caught_up()
    await gut.wait_for("3 sessions", lambda: len(gut.gw.store.sessions) == 3)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{gut.ws_url}/sessions", headers=gut.headers("alice")) as ws:
            first = await receive_json(ws)
            assert first["message_type"] == "session_list"
            assert [s["session_id"] for s in first["sessions"]] == [mine]
            gut.produce([widget_record(theirs, "cost", 2, {"total_usd": 5.0}),
                         widget_record(mine, "cost", 2, {"total_usd": 1.5})])
            upd = await receive_json(ws)
            assert upd["message_type"] == "session_update"
            assert upd["session"]["session_id"] == mine and upd["session"]["cost_usd"] == 1.5
        async with http.ws_connect(f"{gut.ws_url}/sessions",
                                   headers=gut.headers("root", "admin")) as ws:
            first = await receive_json(ws)
            assert {s["session_id"] for s in first["sessions"]} == {mine, theirs, orphan}
        async with http.get(f"{gut.url}/api/sessions", headers=gut.headers("bob")) as resp:
            assert resp.status == 200
            assert [s["session_id"] for s in (await resp.json())["sessions"]] == [theirs]
        async with http.get(f"{gut.url}/api/sessions/{mine}", headers=gut.headers("bob")) as resp:
            assert resp.status == 403
        async with http.get(f"{gut.url}/api/sessions/{mine}", headers=gut.headers("alice")) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["widgets"]["cost"]["data"] == {"total_usd": 1.5}


def _forge(claims: dict[str, Any], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _none_token(claims: dict[str, Any]) -> str:
    import base64
    import json

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


async def test_handshake_refusals(start_gateway: Callable[..., Any],
                                  unique_name: Callable[[str], str]) -> None:
    sid = unique_name("sess")
    orphan = unique_name("orphan")
    gut = await seeded(start_gateway, sid, "alice")
    gut.produce([widget_record(orphan, "session_summary", 1, summary(None))])
    await gut.wait_for("orphan", lambda: gut.gw.store.get(orphan) is not None)
    now = int(time.time())
    good = {"sub": "alice", "role": "viewer", "aud": "agentwatch", "iss": "agentwatch",
            "iat": now, "exp": now + 600}
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    own = f"{gut.ws_url}/sessions/{sid}"
    cases: dict[str, tuple[dict[str, str], str, int]] = {
        "no token": ({}, own, 401),
        "bad signature": (bearer(_forge(good, "wrong-secret-xxxxxxxxxxxxxxxxxxxx")), own, 401),
        "alg none": (bearer(_none_token(good)), own, 401),
        "expired": (bearer(_forge({**good, "iat": now - 7200, "exp": now - 3600})), own, 401),
        "wrong audience": (bearer(_forge({**good, "aud": "other"})), own, 401),
        "wrong issuer": (bearer(_forge({**good, "iss": "evil"})), own, 401),
        "garbage": (bearer("abc.def"), own, 401),
        "other user's session": (gut.headers("bob"), own, 403),
        "ownerless session, viewer": (gut.headers("alice"), f"{gut.ws_url}/sessions/{orphan}", 403),
        "long-lived token in the URL": ({}, f"{own}?token={gut.token('alice')}", 401),
    }
    async with aiohttp.ClientSession() as http:
        for name, (headers, path, status) in cases.items():
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(path, headers=headers):
                    pass
            assert refused.value.status == status, name
        # The ways in: admin on the ownerless session, a short-lived ws token in the URL.
        async with http.ws_connect(f"{gut.ws_url}/sessions/{orphan}",
                                   headers=gut.headers("root", "admin")) as ws:
            assert (await receive_json(ws))["message_type"] == "snapshot"
        async with http.post(f"{gut.url}/api/ws-token", headers=gut.headers("alice")) as resp:
            token = (await resp.json())["token"]
        async with http.ws_connect(f"{gut.ws_url}/sessions/{sid}?token={token}") as ws:
            assert (await receive_json(ws))["session_id"] == sid
        async with http.get(f"{gut.url}/api/sessions") as resp:
            assert resp.status == 401 and "Bearer" in resp.headers["WWW-Authenticate"]
    failures = gut.gw.metrics.auth_failures
    assert failures.labels("algorithm")._value.get() >= 1
    assert failures.labels("expired")._value.get() >= 1


async def test_rate_limit_answers_429_with_retry_after(
        start_gateway: Callable[..., Any]) -> None:
    gut: GatewayUnderTest = await start_gateway(rate_limit_rps=1.0, rate_limit_burst=3)
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(5):
            async with http.get(f"{gut.url}/api/me", headers=gut.headers("carol")) as resp:
                statuses.append(resp.status)
                retry_after = resp.headers.get("Retry-After")
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
        assert retry_after is not None and int(retry_after) >= 1
        # Another user has a bucket of their own.
        async with http.get(f"{gut.url}/api/me", headers=gut.headers("dave")) as resp:
            assert resp.status == 200 and (await resp.json()) == {"user": "dave", "role": "viewer"}


async def test_pattern_alerts_become_a_widget(start_gateway: Callable[..., Any],
                                              unique_name: Callable[[str], str]) -> None:
    sid = unique_name("sess")
    gut = await seeded(start_gateway, sid, "alice")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gut.ws_url}/sessions/{sid}", headers=gut.headers("alice")) as ws:
        await receive_json(ws)
        now = time.time_ns() // 1000
        alert = {"alert_id": "0b7d6f4e-9a55-4a1e-9a33-0c8f5b7e2c11", "pattern": "retry_storm",
                 "session_id": sid, "agent": "claude-code", "severity": "warning",
                 "window_start": now - 10, "window_end": now, "evidence_event_ids": ["e1"],
                 "message": "same command failed 3 times", "suggested_mitigation": None,
                 "detected_at": now}
        gut.produce([alert, alert])
        upd = await receive_json(ws)
        assert upd["widget"] == "pattern_alerts"
        assert [a["pattern"] for a in upd["data"]["alerts"]] == ["retry_storm"]
        await asyncio.sleep(0.5)
        assert len(gut.gw.store.sessions[sid].alerts) == 1
