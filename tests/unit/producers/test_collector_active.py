"""GET /api/active-sessions: the collector's view of live sessions and in-flight tool calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kafka_double import FakeProducer
from prometheus_client import CollectorRegistry

from pipeline.settings import load_settings
from producers.collector.active import COMMAND_CHARS, active_sessions
from producers.collector.app import create_app
from producers.collector.hooks import HookContext, HookState, map_hook
from producers.publisher import EventPublisher

CASES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "claude_code_hooks.json").read_text())
T0 = 1_760_000_000_000_000
SID = CASES["pre_bash"]["session_id"]


def feed(state: HookState, *hooks: tuple[dict[str, Any], int]) -> None:
    for payload, t in hooks:
        map_hook(payload, HookContext(received_us=t), state)


def test_a_session_carries_its_cwd_transcript_and_last_hook_time() -> None:
    state = HookState()
    feed(state, (CASES["session_start"], T0), (CASES["user_prompt"], T0 + 5))
    [session] = active_sessions(state, T0 + 10)["sessions"]
    assert session["session_id"] == SID
    assert session["cwd"] == "/home/dev/app"
    assert session["transcript_path"].endswith(f"{SID}.jsonl")
    assert session["started_us"] == T0 and session["last_seen_us"] == T0 + 5
    assert session["state"] == "working" and session["calls"] == []


def test_a_bash_call_is_in_flight_from_pre_to_post() -> None:
    state = HookState()
    feed(state, (CASES["session_start"], T0), (CASES["pre_bash"], T0 + 100))
    [session] = active_sessions(state, T0 + 200)["sessions"]
    assert session["calls"] == [{
        "tool_use_id": "toolu_01BashTest", "tool_name": "Bash", "started_us": T0 + 100,
        "agent_id": None, "command": "cd /home/dev/app && pytest -q tests/test_app.py",
        "background": False}]
    feed(state, (CASES["post_bash_test"], T0 + 300))
    [session] = active_sessions(state, T0 + 400)["sessions"]
    assert session["calls"] == [] and session["last_seen_us"] == T0 + 300


def test_other_tools_are_listed_without_their_input() -> None:
    state = HookState()
    feed(state, (CASES["pre_edit"], T0))
    [session] = active_sessions(state, T0)["sessions"]
    [call] = session["calls"]
    assert call["tool_name"] == "Edit" and "command" not in call


def test_long_commands_are_cut() -> None:
    state = HookState()
    pre = dict(CASES["pre_bash"], tool_input={"command": "echo " + "x" * 10_000})
    feed(state, (pre, T0))
    [call] = active_sessions(state, T0)["sessions"][0]["calls"]
    assert len(call["command"]) == COMMAND_CHARS


def test_ended_sessions_leave_and_old_ones_are_filtered_by_since() -> None:
    state = HookState()
    other = dict(CASES["session_start"], session_id="other", cwd="/srv/other")
    feed(state, (CASES["session_start"], T0), (other, T0 + 1_000))
    ids = [s["session_id"] for s in active_sessions(state, T0 + 2_000)["sessions"]]
    assert ids == ["other", SID]  # most recent first
    assert [s["session_id"] for s in active_sessions(state, 0, since_us=T0 + 500)["sessions"]] == [
        "other"]
    assert len(active_sessions(state, 0, limit=1)["sessions"]) == 1
    feed(state, (dict(CASES["session_end"], session_id="other"), T0 + 3_000))
    assert [s["session_id"] for s in active_sessions(state, 0)["sessions"]] == [SID]


def test_calls_of_a_forgotten_session_are_still_listed() -> None:
    state = HookState(max_sessions=1)
    feed(state, (CASES["pre_bash"], T0), (dict(CASES["session_start"], session_id="b"), T0 + 1))
    sessions = {s["session_id"]: s for s in active_sessions(state, T0 + 2)["sessions"]}
    assert sessions[SID]["cwd"] is None
    assert [c["tool_use_id"] for c in sessions[SID]["calls"]] == ["toolu_01BashTest"]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = load_settings(spool={"dir": str(tmp_path / "spool")},
                             collector={"inbox_dir": str(tmp_path / "inbox"), "otlp_workers": 0})
    fake = FakeProducer()
    publisher = EventPublisher(settings, "collector", registry=CollectorRegistry(),
                               producer_factory=lambda _cb: fake)
    c = TestClient(TestServer(create_app(settings, publisher=publisher)))
    await c.start_server()
    yield c
    await c.close()


async def test_the_endpoint_serves_what_the_hooks_taught(client: TestClient[Any, Any]) -> None:
    for name in ("session_start", "pre_bash"):
        assert (await client.post("/hooks", json=CASES[name])).status == 200
    resp = await client.get("/api/active-sessions")
    assert resp.status == 200
    body = await resp.json()
    [session] = body["sessions"]
    assert session["session_id"] == SID and session["cwd"] == "/home/dev/app"
    assert [c["tool_use_id"] for c in session["calls"]] == ["toolu_01BashTest"]
    assert body["now_us"] >= session["last_seen_us"]
    far = body["now_us"] + 10**9
    assert (await (await client.get(f"/api/active-sessions?since_us={far}")).json())[
        "sessions"] == [session]  # a session with a call in flight is never filtered out
    assert (await client.get("/api/active-sessions?limit=x")).status == 400
