"""Real Claude Code hook payloads through the collector into the real ingest topic, and back."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from collector_support import collector_settings, consume, running_collector

from pipeline.privacy import default_user_id, stamp
from pipeline.settings import REPO_ROOT
from pipeline.validation import validate_event
from producers.collector.hooks import HookContext, HookState, map_hook

pytestmark = pytest.mark.integration

CASES: dict[str, dict[str, Any]] = json.loads(
    (REPO_ROOT / "tests" / "data" / "claude_code_hooks.json").read_text())


def comparable(event: dict[str, Any]) -> tuple[Any, ...]:
    """What must match between the live path and the pure mapping (ids and times are per run)."""
    body = dict(event["payload"][1])
    if event["event_type"] == "session.ended":
        body.pop("duration_ms")  # wall time between two posts
    return (event["event_type"], event["session_id"], event["tool_use_id"], event["task_id"],
            event["payload"][0], json.dumps(body, sort_keys=True),
            json.dumps(event["metadata"], sort_keys=True))


async def test_every_hook_type_reaches_the_ingest_topic(
        tmp_path: Path, kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic("ingest", partitions=3)
    expected: list[dict[str, Any]] = []
    state = HookState()
    for payload in CASES.values():
        expected += map_hook(payload, HookContext(received_us=0), state)
    # The collector attributes every event to its configured user (the OS user by default).
    stamp(expected, default_user_id())

    settings = collector_settings(tmp_path, kafka_bootstrap, topic)
    async with running_collector(settings) as collector, aiohttp.ClientSession() as http:
        for name, payload in CASES.items():
            resp = await http.post(collector.url("/hooks"), json=payload)
            assert resp.status == 200, name
        assert await asyncio.to_thread(collector.publisher.flush, 30) == 0

    messages = await asyncio.to_thread(consume, kafka_bootstrap, topic, len(expected))
    assert len(messages) == len(expected)
    # One session: one partition, in the order the hooks arrived.
    assert {m.partition for m in messages} == {messages[0].partition}
    assert [m.offset for m in messages] == sorted(m.offset for m in messages)
    assert [comparable(m.event) for m in messages] == [comparable(e) for e in expected]
    for message in messages:
        validate_event(message.event)
        assert message.key == message.event["session_id"].encode()
        assert message.event["source"] == "hook"
    assert len({m.event["event_id"] for m in messages}) == len(messages)
    [ended] = [m.event for m in messages if m.event["event_type"] == "session.ended"]
    assert ended["payload"][1]["duration_ms"] >= 0
    types = {m.event["event_type"] for m in messages}
    assert {"session.started", "user.prompt", "command.executed", "test.executed",
            "build.completed", "file.write", "file.read", "file.search", "network.request",
            "agent.task.started", "agent.task.completed", "agent.task.failed",
            "agent.state.transition", "notification", "session.ended", "other"} <= types


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_hook(payload: dict[str, Any], env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-S", str(REPO_ROOT / "producers" / "hook_cmd.py"),
        stdin=asyncio.subprocess.PIPE, env={**os.environ, **env})
    await proc.communicate(json.dumps(payload).encode())
    return await proc.wait()


async def test_command_hook_reaches_kafka_directly_and_through_the_inbox(
        tmp_path: Path, kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic("ingest")
    settings = collector_settings(tmp_path, kafka_bootstrap, topic)
    env = {"AGENTWATCH_COLLECTOR__INBOX_DIR": str(tmp_path / "inbox"),
           "AGENTWATCH_COLLECTOR__HOOK_LOG": str(tmp_path / "hook.log")}

    # Collector up: the hook is posted and answered.
    async with running_collector(settings) as collector:
        env["AGENTWATCH_COLLECTOR__PORT"] = str(collector.server.port)
        assert await run_hook(CASES["session_start"], env) == 0
        assert await run_hook(CASES["post_edit"], env) == 0
        assert collector.metric("agentwatch_collector_events_received_total",
                                source="hook", type="file.write") == 1

    # Collector down: the hooks wait in the inbox, the agent is not failed.
    env["AGENTWATCH_COLLECTOR__PORT"] = str(free_port())
    assert await run_hook(CASES["post_bash_test"], env) == 0
    assert await run_hook(CASES["session_end"], env) == 0
    assert len(list((tmp_path / "inbox").glob("*.hook"))) == 2

    # Back up: the inbox is drained first, in arrival order.
    async with running_collector(settings) as collector:
        assert await asyncio.to_thread(collector.publisher.flush, 30) == 0
    assert list((tmp_path / "inbox").glob("*.hook")) == []

    messages = await asyncio.to_thread(consume, kafka_bootstrap, topic, 5)
    assert [m.event["event_type"] for m in messages] == [
        "session.started", "file.write", "command.executed", "test.executed", "session.ended"]
    stamps = [m.event["timestamp"] for m in messages]
    assert stamps == sorted(stamps)  # the command hook's arrival times, not the drain's
