"""A 2xx is a promise: kill -9 the collector right after it answered, and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from collector_support import consume, topic_size

pytestmark = pytest.mark.integration

HOOKS = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collector(tmp_path: Path, bootstrap: str, topic: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ,
           "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "AGENTWATCH_TOPICS__INGEST": topic,
           "AGENTWATCH_STACK__DIR": str(tmp_path / "stack"),
           "AGENTWATCH_SPOOL__DIR": str(tmp_path / "spool"),
           "AGENTWATCH_COLLECTOR__PORT": str(port),
           "AGENTWATCH_LOG_FORMAT": "text"}
    with open(tmp_path / f"collector-{port}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "collector"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def wait_for_size(bootstrap: str, topic: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and topic_size(bootstrap, topic) < count:
        time.sleep(0.5)


async def wait_healthy(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("collector did not become healthy")


async def test_kill_after_2xx_loses_nothing(tmp_path: Path, kafka_bootstrap: str,
                                            kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic("ingest", partitions=3)
    port = free_port()
    # First life: Kafka unreachable, so every accepted event can only be in the spool.
    first = start_collector(tmp_path, f"127.0.0.1:{free_port()}", topic, port)
    try:
        await wait_healthy(port)
        async with aiohttp.ClientSession() as http:
            for i in range(HOOKS):
                hook = {"session_id": f"crash-{i % 7}", "hook_event_name": "PostToolUse",
                        "tool_name": "Read", "tool_use_id": f"toolu_{i:05d}",
                        "tool_input": {"file_path": f"/src/{i}.py"}}
                async with http.post(f"http://127.0.0.1:{port}/hooks", json=hook) as resp:
                    assert resp.status == 200
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)

    # Second life, same spool, Kafka reachable: the spooled events go out.
    second = start_collector(tmp_path, kafka_bootstrap, topic, port)
    try:
        await wait_healthy(port)
        await asyncio.to_thread(wait_for_size, kafka_bootstrap, topic, HOOKS, 60.0)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0

    messages = await asyncio.to_thread(consume, kafka_bootstrap, topic, HOOKS, 60.0)
    assert {m.event["tool_use_id"] for m in messages} == {f"toolu_{i:05d}" for i in range(HOOKS)}
    assert len({m.event["event_id"] for m in messages}) == HOOKS
    assert await asyncio.to_thread(topic_size, kafka_bootstrap, topic) == HOOKS
