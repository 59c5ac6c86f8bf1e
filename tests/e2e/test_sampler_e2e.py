"""Issue 13 in the browser: the host sampler's real measurements on the dashboard.

A real ``agentwatch sampler`` process watches a stand-in agent (a Python process named by a
marker in its script path, as Claude Code is named by ``claude-code/cli.js``; its session given
by ``AGENTWATCH_SESSION_ID``, see docs/sampler.md). The agent holds memory of its own and runs a
simulated Bash call (hooks to the collector, a real ``/bin/sh -c`` child) that allocates 200 MiB,
names a host in its arguments and moves 64 KiB over a real TCP connection. The events go
sampler -> ingest -> worker -> events/widgets -> gateway -> browser, and the resource graph and
network trace must show exactly what the session's events on the events topic say.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    Pipeline,
    admin_token,
    no_horizontal_overflow,
    running_pipeline,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MARKER = f"e2e-fake-agent-{uuid.uuid4().hex[:8]}"
HOST = "files.e2e-mirror.example.org"
RESOURCE_POINTS = 120  # processors/widgets/reducers.py keeps the last 120 samples

# Holds 96 MiB of its own (so the tree's RSS is the agent's too), then runs each command it is
# given in a fresh shell and waits for it, as Claude Code does.
AGENT = """
import json, os, subprocess, sys
held = bytearray(b"\\x02") * (96 * 1024 * 1024)
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    env = dict(os.environ, CLAUDE_CODE_SESSION_ID=job["session_id"])
    print(subprocess.run(["/bin/sh", "-c", job["command"]], env=env).returncode, flush=True)
"""

# Allocates and touches 200 MiB, sends 64 KiB over a TCP connection it holds for 1.5 s.
CHILD = """
import socket, sys, time
port = int(sys.argv[1])
block = bytearray(b"\\x01") * (200 * 1024 * 1024)
conn = socket.create_connection(("127.0.0.1", port))
conn.sendall(b"x" * 65536)
time.sleep(1.5)
conn.close()
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Pipeline]:
    env = {
        "AGENTWATCH_SAMPLER__INTERVAL_S": "0.5",
        "AGENTWATCH_SAMPLER__COMMAND_INTERVAL_S": "0.05",
        "AGENTWATCH_SAMPLER__PROCESS_NAMES": "[]",
        "AGENTWATCH_SAMPLER__CMDLINE_PATTERNS": json.dumps([MARKER]),
        "AGENTWATCH_SAMPLER__INCLUDE_LOOPBACK": "true",
        # Socket lookups at every tick on this busy shared host (see the sampler's own test).
        "AGENTWATCH_SAMPLER__NETWORK_CPU_SHARE": "0.5",
    }
    with running_pipeline(tmp_path_factory.mktemp("e2esampler"), kafka_bootstrap,
                          ["worker", "collector", "sampler", "gateway"], env) as p:
        yield p


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
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    server.close()


def session_events(bootstrap: str, topic: str, session_id: str) -> list[dict[str, Any]]:
    """The session's events on the (redacted) events topic, read to its end, by time."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.serde import AvroSerde

    serde = AvroSerde()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {}
        for p in meta.partitions:
            _, ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[dict[str, Any]] = []
        done: set[int] = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 30
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                value = msg.value()
                if not msg.error() and value is not None and msg.key() == session_id.encode():
                    out.append(serde.decode_event(value))
            # Transaction markers take the last offsets: the position says when a partition ends.
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    done.add(tp.partition)
        return sorted(out, key=lambda e: e["timestamp"])
    finally:
        consumer.close()


def expected_view(events: list[dict[str, Any]]) -> tuple[list[float], dict[str, tuple[int, int]]]:
    """What the events say the dashboard must show: the memory series and, per domain,
    (requests, bytes)."""
    samples = [e["payload"][1]["memory_mib"] for e in events
               if e["event_type"] == "resource.sample"][-RESOURCE_POINTS:]
    domains: dict[str, tuple[int, int]] = {}
    for e in events:
        if e["event_type"] not in ("network.request", "network.transfer"):
            continue
        body = e["payload"][1]
        requests, moved = domains.get(body["domain"], (0, 0))
        domains[body["domain"]] = (
            requests + (e["event_type"] != "network.transfer"),
            moved + (body.get("bytes_sent") or 0) + (body.get("bytes_received") or 0))
    return samples, domains


async def shown(page: Any) -> tuple[list[float], dict[str, tuple[int, int]], str]:
    series = await page.evaluate(
        "() => Chart.getChart(document.getElementById('resources-chart')).data.datasets[0].data")
    rows = await page.evaluate("""() => [...document.querySelectorAll('#network-domains tr')]
        .map(tr => [...tr.children].map(td => td.textContent))""")
    return (list(series), {d: (int(r), int(b)) for d, r, b in rows},
            await page.locator("#resources-now").inner_text())


def _hook(pipeline: Pipeline, body: dict[str, Any]) -> None:
    pipeline.post_hook(body)


async def test_resource_graph_and_network_trace_show_the_samplers_real_data(
        pipeline: Pipeline, kafka_bootstrap: str, sink_port: int, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sid = str(uuid.uuid4())
    tool_use_id = f"toolu_{uuid.uuid4().hex[:12]}"
    script = tmp_path / f"{MARKER}.py"
    script.write_text(AGENT)
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    command = f"{sys.executable} {child} {sink_port} https://{HOST}/simple/pkg/"
    base = {"session_id": sid, "cwd": str(tmp_path), "transcript_path": str(tmp_path / "t.jsonl")}
    _hook(pipeline, {**base, "hook_event_name": "SessionStart", "source": "startup"})
    agent = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=tmp_path, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "AGENTWATCH_SESSION_ID": sid})
    sampler = pipeline.procs["sampler"]
    try:
        assert agent.stdout is not None and agent.stdin is not None
        assert (await asyncio.wait_for(agent.stdout.readline(), 60)).strip() == b"ready"
        deadline = time.monotonic() + 30
        while sampler.get_json("/health")["agents_resolved"] < 1:
            assert time.monotonic() < deadline, sampler.get_json("/health")
            await asyncio.sleep(0.2)
        _hook(pipeline, {**base, "hook_event_name": "PreToolUse", "tool_name": "Bash",
                         "tool_use_id": tool_use_id,
                         "tool_input": {"command": command, "description": "fetch and build"}})
        agent.stdin.write(json.dumps({"command": command, "session_id": sid}).encode() + b"\n")
        await agent.stdin.drain()
        assert (await asyncio.wait_for(agent.stdout.readline(), 120)).strip() == b"0"
        _hook(pipeline, {**base, "hook_event_name": "PostToolUse", "tool_name": "Bash",
                         "tool_use_id": tool_use_id, "tool_input": {"command": command},
                         "tool_response": {"stdout": "", "stderr": "", "exit_code": 0}})
        deadline = time.monotonic() + 60
        while sampler.get_json("/health")["events"].get("command.resources", 0) < 1:
            assert time.monotonic() < deadline, sampler.get_json("/health")
            await asyncio.sleep(0.2)
    finally:
        if agent.returncode is None:
            agent.terminate()
        await agent.wait()

    events_topic = f"{pipeline.prefix}.events"
    token = admin_token()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                context = await browser.new_context(viewport=viewport, has_touch=label == "phone")
                page = await context.new_page()
                await page.goto(f"{pipeline.gateway_url}/#token={token}")
                await page.goto(f"{pipeline.gateway_url}/#/session/{sid}")
                await expect(page.get_by_test_id("conn-status")).to_have_text("live", timeout=15_000)
                # The sampler may still be delivering the last samples: compare until the page
                # and the events topic agree (the page must converge to exactly the events).
                deadline = time.monotonic() + 60
                while True:
                    events = await asyncio.to_thread(session_events, kafka_bootstrap,
                                                     events_topic, sid)
                    series, domains = expected_view(events)
                    on_page = await shown(page)
                    if series and (on_page[0], on_page[1]) == (series, domains):
                        break
                    assert time.monotonic() < deadline, (on_page, series, domains)
                    await asyncio.sleep(0.5)
                peak = max(series)
                assert peak >= 200 + 96  # the agent's 96 MiB and the call's 200 MiB, one sample
                assert f"(peak {round(peak)})" in on_page[2]
                assert f"memory {round(series[-1])} MiB" in on_page[2]
                connection = domains["127.0.0.1"]
                assert connection[0] >= 1 and connection[1] >= 65536, domains
                assert domains[HOST][0] >= 1, domains
                [resources] = [e for e in events if e["event_type"] == "command.resources"]
                assert resources["tool_use_id"] == tool_use_id
                assert resources["payload"][1]["peak_memory_mib"] >= 200
                assert {e["metadata"].get("via") for e in events
                        if e["event_type"] == "network.request"} >= {"connection", "url"}
                assert await no_horizontal_overflow(page), label
                await page.locator("#w-resources").scroll_into_view_if_needed()
                await page.screenshot(path=str(ARTIFACTS / f"sampler-{label}.png"), full_page=True)
                await context.close()
        finally:
            await browser.close()
