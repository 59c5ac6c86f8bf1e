"""The host sampler against real processes: a Bash call's peak RSS and CPU time, through the real
collector's active-sessions view, into the real ingest topic.

A stand-in agent (a Python process named by a marker in its script path, as Claude Code is named
by ``claude-code/cli.js``) runs each command it is given in a fresh ``/bin/sh -c``, with
``CLAUDE_CODE_SESSION_ID`` in the environment, and waits for it, as Claude Code does. The command
allocates ~200 MiB, burns ~1 s of CPU and reports its own ``getrusage``; the sampler's
``command.resources`` event must agree within 20%.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from collector_support import collector_settings, consume, running_collector, topic_size

from pipeline.redaction import Redactor
from pipeline.settings import Settings
from processors.widgets.reducers import apply, new_state, render
from producers.publisher import EventPublisher
from producers.sampler.main import SamplerService

pytestmark = pytest.mark.integration

AGENT_SCRIPT = """
import os, subprocess, sys
for line in sys.stdin:
    job = __import__("json").loads(line)
    env = dict(os.environ, CLAUDE_CODE_SESSION_ID=job["session_id"])
    code = subprocess.run(["/bin/sh", "-c", job["command"]], env=env).returncode
    print(code, flush=True)
"""

# Allocates and touches 200 MiB, holds a TCP connection, burns ~1 s of CPU, then reports what the
# kernel says it used (ru_maxrss is KiB on Linux, bytes on macOS).
CHILD = """
import json, resource, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
block = bytearray(b"\\x01") * (200 * 1024 * 1024)
conn = socket.create_connection(("127.0.0.1", port))
conn.sendall(b"x" * 65536)
start = time.process_time()
n = 0
while time.process_time() - start < 1.0:
    n += sum(range(2000))
conn.close()
ru = resource.getrusage(resource.RUSAGE_SELF)
scale = 1 if sys.platform == "darwin" else 1024
json.dump({"maxrss": ru.ru_maxrss * scale, "cpu": ru.ru_utime + ru.ru_stime,
           "user": ru.ru_utime, "system": ru.ru_stime}, open(out, "w"))
"""


@pytest.fixture
def sink_port() -> Iterator[int]:
    """A local TCP server that reads and discards, for the child's connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                while conn.recv(65536):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def sampler_settings(base: Settings, collector_url: str, marker: str) -> Settings:
    sampler = base.sampler.model_copy(update={
        "collector_url": collector_url, "interval_s": 0.5, "command_interval_s": 0.05,
        "process_names": (), "cmdline_patterns": (marker,), "include_loopback": True,
        # Socket lookups cost more on this busy shared host than on a laptop: let them run at
        # every tick, so the child's one-second connection is seen whatever the load.
        "network_cpu_share": 0.5})
    return base.model_copy(update={"sampler": sampler})


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_bash_call_carries_the_peak_rss_and_cpu_time_its_process_measured(
        tmp_path: Path, kafka_bootstrap: str, kafka_topic: Callable[..., str],
        sink_port: int) -> None:
    topic = kafka_topic("sampler")
    marker = f"fake-agent-{uuid.uuid4().hex[:8]}"
    script = tmp_path / f"{marker}.py"
    script.write_text(AGENT_SCRIPT)
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    measured = tmp_path / "measured.json"
    session_id = str(uuid.uuid4())
    tool_use_id = f"toolu_{uuid.uuid4().hex[:12]}"
    command = f"{sys.executable} {child} {sink_port} {measured}"

    agent = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=tmp_path, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    base = collector_settings(tmp_path, kafka_bootstrap, topic, otlp_workers=0)
    stop = asyncio.Event()
    try:
        async with running_collector(base) as collector, aiohttp.ClientSession() as http:
            settings = sampler_settings(base, collector.url("/").rstrip("/"), marker)
            publisher = EventPublisher(settings, "sampler").start()
            service = SamplerService(settings, publisher)
            loop = asyncio.create_task(service.run(stop))

            async def hook(name: str, **extra: Any) -> None:
                body = {"session_id": session_id, "hook_event_name": name, "cwd": str(tmp_path),
                        "transcript_path": str(tmp_path / "t.jsonl"), **extra}
                assert (await http.post(collector.url("/hooks"), json=body)).status == 200

            await hook("SessionStart", source="startup")
            await until(lambda: service.sampler.stats.agents_resolved == 1, 30, "the agent")
            await hook("PreToolUse", tool_name="Bash", tool_use_id=tool_use_id,
                       tool_input={"command": command, "description": "allocate and burn"})
            assert agent.stdin is not None and agent.stdout is not None
            agent.stdin.write(json.dumps({"command": command, "session_id": session_id}).encode()
                              + b"\n")
            await agent.stdin.drain()
            assert (await asyncio.wait_for(agent.stdout.readline(), 120)).strip() == b"0"
            await hook("PostToolUse", tool_name="Bash", tool_use_id=tool_use_id,
                       tool_input={"command": command},
                       tool_response={"stdout": "", "stderr": "", "exit_code": 0})
            await until(lambda: service.sampler.stats.events.get("command.resources", 0) == 1,
                        30, "command.resources")
            stop.set()
            await loop
            assert await asyncio.to_thread(publisher.flush, 30) == 0
            publisher.close()
            assert await asyncio.to_thread(collector.publisher.flush, 30) == 0
    finally:
        stop.set()
        if agent.returncode is None:
            agent.kill()
        await agent.wait()

    total = await asyncio.to_thread(topic_size, kafka_bootstrap, topic)
    events = [m.event for m in await asyncio.to_thread(consume, kafka_bootstrap, topic, total)]
    truth = json.loads(measured.read_text())

    executed = [e for e in events if e["event_type"] == "command.executed"]
    [resources] = [e for e in events if e["event_type"] == "command.resources"]
    assert [e["tool_use_id"] for e in executed] == [tool_use_id]
    assert resources["tool_use_id"] == tool_use_id and resources["session_id"] == session_id
    body = resources["payload"][1]
    peak_bytes = body["peak_memory_mib"] * 1024 * 1024
    cpu_s = (body["cpu_user_ms"] + body["cpu_system_ms"]) / 1000
    assert truth["maxrss"] > 200 * 1024 * 1024 and truth["cpu"] >= 1.0
    assert peak_bytes == pytest.approx(truth["maxrss"], rel=0.2)
    assert cpu_s == pytest.approx(truth["cpu"], rel=0.2)
    assert body["cpu_user_ms"] / 1000 == pytest.approx(truth["user"], rel=0.2)
    assert body["duration_ms"] >= 1000 * truth["cpu"] * 0.8
    assert (body["binary"], body["args"]) == (executed[0]["payload"][1]["binary"],
                                              executed[0]["payload"][1]["args"])

    samples = [e for e in events if e["event_type"] == "resource.sample"]
    assert samples and {e["session_id"] for e in samples} == {session_id}
    assert max(e["payload"][1]["memory_mib"] for e in samples) >= 200
    assert max(e["payload"][1]["cpu_pct"] for e in samples) > 0

    connections = [e for e in events if e["event_type"] == "network.request"
                   and e["metadata"].get("via") == "connection"]
    assert any(e["payload"][1]["domain"] == "127.0.0.1" and e["tool_use_id"] == tool_use_id
               and e["metadata"]["remote_port"] == str(sink_port) for e in connections)
    assert "127.0.0.1" in body["network_requests"]

    # The dashboard's widgets over these real events, redacted as the worker does.
    redactor = Redactor()
    state = new_state(session_id)
    for event in sorted(events, key=lambda e: e["timestamp"]):
        apply(state, redactor.redact_event(event))
    usage = render(state, "resource_usage")
    assert usage["peak_memory_mib"] >= 200 and usage["series"]
    assert usage["memory_limit_mib"] and usage["cpu_limit_pct"]
    trace = render(state, "network_trace")
    assert any(d["domain"] == "127.0.0.1" and d["requests"] >= 1 for d in trace["by_domain"])
    assert render(state, "session_summary")["counts"]["commands"] == 1
    assert state["cost"]["cpu_ms"] == body["cpu_user_ms"] + body["cpu_system_ms"]
