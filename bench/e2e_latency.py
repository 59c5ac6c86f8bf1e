"""End-to-end dashboard latency: a hook posted to the collector -> the widget_update that shows it
arriving at a WebSocket client of the gateway, under a background load of ~1,000 events/s.

    .venv/bin/python bench/e2e_latency.py [--rate 1000] [--seconds 45] [--probe-rate 2]

Needs the local stack's Kafka. Starts a private pipeline as `agentwatch up` would run it (worker,
collector and gateway as `python -m pipeline.cli <command>` subprocesses, on private topics, app id
and ports, default settings otherwise: nothing is tuned), then:

- a load process (this script with ``--load``, so its CPU does not slow the measuring client)
  posts PostToolUse hooks over kept-alive HTTP to the collector for 64 sessions, open loop at
  ``rate / 2`` hooks/s (each maps to two events: command.executed + test.executed);
- meanwhile this process posts one Notification hook (one event) for a watched session every
  ``1 / probe-rate`` s and notes the time before the POST; a WebSocket client (bearer token
  minted by `agentwatch token`) subscribed to that session's session_summary takes the first
  update whose event count reaches that probe's as the probe's arrival.

Then reads the probes' records back from the private topics to split the delay into stages
(bench/_e2e_stages.py).

Prints the delay's p50/p95/p99/max, the probes, the achieved background rate (hooks sent and
events the collector got acknowledged by Kafka) and the machine load (uptime) before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _e2e_stages import ProbeTimes, breakdown
from confluent_kafka.admin import AdminClient

SELF = Path(__file__).resolve()
REPO = SELF.parents[1]
SECRET = "bench-e2e-secret-0123456789abcdef0123456789"
BG_SESSIONS = 64
OWNER = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# ---------------------------------------------------------------------------- background load

def bg_hook(i: int) -> dict[str, Any]:
    return {"session_id": f"e2e-bg-{i % BG_SESSIONS:02d}", "hook_event_name": "PostToolUse",
            "cwd": "/home/dev/app", "permission_mode": "default", "tool_name": "Bash",
            "tool_use_id": f"toolu_{i:09d}",
            "tool_input": {"command": "pytest -q tests/unit", "description": "Run unit tests"},
            "tool_response": {"stdout": "....\n4 passed in 0.12s\n", "stderr": "",
                              "interrupted": False, "isImage": False},
            "duration_ms": 812}


def _request(port: int, body: bytes) -> bytes:
    return (f"POST /hooks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> int:
    """One request on a raw kept-alive stream: far lighter than an aiohttp client, so the load
    process keeps its rate on a small machine."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def background(port: int, hooks_per_s: float, seconds: float, conns: int) -> dict[str, Any]:
    """Open loop: hook i is due at start + i/rate; each connection sends the hooks i = j mod
    conns, late ones at once (a lagging collector shows as a lower achieved rate)."""
    total = int(hooks_per_s * seconds)
    start = time.perf_counter() + 0.1
    sent = [0]
    failed = [0]

    async def connection(j: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(j, total, conns):
                delay = start + i / hooks_per_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                status = await _exchange(reader, writer,
                                         _request(port, json.dumps(bg_hook(i)).encode()))
                if status == 200:
                    sent[0] += 1
                else:
                    failed[0] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(j) for j in range(conns)))
    elapsed = max(time.perf_counter() - start, 1e-3)
    return {"hooks": sent[0], "failed": failed[0], "seconds": elapsed}


# ---------------------------------------------------------------------------- private pipeline

@dataclass
class Component:
    command: str
    port: int
    env: dict[str, str]
    log: Path
    ready_key: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", self.command],
                                         cwd=REPO, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.command} exited {self.proc.returncode}: "
                                 f"{self.log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError, ValueError):
                url = f"http://127.0.0.1:{self.port}/health"
                with urllib.request.urlopen(url, timeout=1) as r:
                    health = json.loads(r.read())
                    if health.get(self.ready_key, True):
                        return
            time.sleep(0.3)
        raise SystemExit(f"{self.command} not ready in {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Pipeline:
    bootstrap: str
    workdir: Path
    prefix: str = field(default_factory=lambda: f"benche2e{uuid.uuid4().hex[:8]}")
    parts: list[Component] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    """``--set`` overrides (AGENTWATCH_* variables) for every component: to measure a setting."""

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update({
            "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            **{f"AGENTWATCH_TOPICS__{n.upper()}": f"{self.prefix}.{n}"
               for n in ("ingest", "events", "widgets", "patterns", "dlq", "replay")},
            "AGENTWATCH_STACK__DIR": str(self.workdir),
            "AGENTWATCH_SPOOL__DIR": str(self.workdir / "spool"),
            "AGENTWATCH_GATEWAY__JWT_SECRET": SECRET,
            "AGENTWATCH_LOG_LEVEL": "WARNING",
            **self.settings,
            **extra,
        })
        return env

    def start(self) -> tuple[int, int]:
        wport, cport, gport = free_port(), free_port(), free_port()
        # The worker first: it creates the private topics the others read and write.
        self.parts.append(Component("worker", wport, self.env(
            AGENTWATCH_WORKER__APP_ID=self.prefix, AGENTWATCH_WORKER_HTTP__PORT=str(wport)),
            self.workdir / "worker.log", "assigned_partitions"))
        # Consent off: the collector would otherwise read the shared ClickHouse consent table.
        self.parts.append(Component("collector", cport, self.env(
            AGENTWATCH_COLLECTOR__PORT=str(cport),
            AGENTWATCH_COLLECTOR__INBOX_DIR=str(self.workdir / "inbox"),
            AGENTWATCH_COLLECTOR__HOOK_LOG=str(self.workdir / "hook.log"),
            AGENTWATCH_PRIVACY__USER_ID=OWNER, AGENTWATCH_PRIVACY__CONSENT_ENABLED="false"),
            self.workdir / "collector.log", "healthy"))
        self.parts.append(Component("gateway", gport, self.env(
            AGENTWATCH_GATEWAY__PORT=str(gport), AGENTWATCH_GATEWAY__REPLAY_TO_KAFKA="false"),
            self.workdir / "gateway.log", "caught_up"))
        for part in self.parts:
            part.start()
        return cport, gport

    def pids(self) -> dict[str, int]:
        return {p.command: p.proc.pid for p in self.parts if p.proc is not None}

    def token(self) -> str:
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", "token", "--user", OWNER,
                              "--role", "admin", "--ttl", "3600"], cwd=REPO, env=self.env(),
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result()


# ---------------------------------------------------------------------------- measurement

@dataclass
class Probes:
    """Probe k (0-based) is the session's (base + k + 1)-th event; posted[k] is perf_counter
    before its POST, arrived[k] when the first session_summary counting it reached the client."""

    base: int = 0
    events: int = 0
    posted: list[float] = field(default_factory=list)
    posted_wall_us: list[int] = field(default_factory=list)
    arrived: dict[int, float] = field(default_factory=dict)
    arrived_wall_us: dict[int, int] = field(default_factory=dict)
    collector_to_client_ms: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, done: Callable[[], bool], within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while True:
            self.changed.clear()
            if done():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def seen(self, summary: dict[str, Any], now: float, now_wall_us: int) -> None:
        self.events = max(self.events, int(summary.get("events") or 0))
        self.changed.set()
        for k in range(len(self.posted)):
            if k not in self.arrived and self.events >= self.base + k + 1:
                self.arrived[k] = now
                self.arrived_wall_us[k] = now_wall_us
                last = summary.get("last_event") or {}
                if self.events == self.base + k + 1 and last.get("timestamp"):
                    # The event's timestamp is the collector's receive time (same host clock).
                    self.collector_to_client_ms.append((now_wall_us - last["timestamp"]) / 1000)


async def read_updates(ws: aiohttp.ClientWebSocketResponse, probes: Probes) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        now, wall = time.perf_counter(), time.time_ns() // 1000
        body = json.loads(msg.data)
        kind = body.get("message_type")
        if kind == "widget_update" and body.get("widget") == "session_summary":
            probes.seen(body["data"], now, wall)
        elif kind == "snapshot":
            summary = (body.get("widgets") or {}).get("session_summary")
            if summary:
                probes.seen(summary["data"], now, wall)


def probe_hook(sid: str, k: int) -> dict[str, Any]:
    return {"session_id": sid, "hook_event_name": "Notification", "cwd": "/home/dev/app",
            "message": f"probe {k}"}


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    async with http.post(url, json=body) as resp:
        await resp.read()
        if resp.status != 200:
            raise SystemExit(f"collector answered {resp.status} to a probe")


async def scrape(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """A component's /metrics, summed over labels per sample name (histogram buckets kept by le)."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        if name.endswith("_bucket"):
            name += "|" + head.split('le="', 1)[1].split('"', 1)[0]
        out[name] = out.get(name, 0.0) + float(value)
    return out


def histogram_quantile(before: dict[str, float], after: dict[str, float], name: str,
                       q: float) -> str:
    """The bucket bound holding quantile ``q`` of the observations between two scrapes."""
    buckets = sorted((float(k.split("|", 1)[1]), after[k] - before.get(k, 0.0))
                     for k in after if k.startswith(name + "_bucket|"))
    if not buckets or buckets[-1][1] <= 0:
        return "n/a"
    bound = next(le for le, n in buckets if n >= q * buckets[-1][1])
    return f"<= {bound * 1000:g} ms"


async def measure(args: argparse.Namespace, pipe: Pipeline, cport: int, gport: int
                  ) -> dict[str, Any]:
    hooks_url = f"http://127.0.0.1:{cport}/hooks"
    ports = {p.command: p.port for p in pipe.parts}

    async def scrape_all() -> dict[str, dict[str, float]]:
        got = await asyncio.gather(*(scrape(http, port) for port in ports.values()))
        return dict(zip(ports, got, strict=True))
    sid = f"e2e-probe-{uuid.uuid4().hex[:8]}"
    probes = Probes()
    async with aiohttp.ClientSession() as http:
        # The session must exist before a client can get its snapshot: one warm-up probe.
        await post(http, hooks_url, probe_hook(sid, -1))
        token = await asyncio.to_thread(pipe.token)
        ws = await http.ws_connect(f"ws://127.0.0.1:{gport}/sessions/{sid}",
                                   headers={"Authorization": f"Bearer {token}"})
        await ws.send_json({"action": "subscribe", "widgets": ["session_summary"]})
        reader = asyncio.create_task(read_updates(ws, probes))
        if not await probes.wait(lambda: probes.events >= 1, 60.0):
            raise SystemExit("the warm-up probe never reached the dashboard client")

        load_s = args.warmup + args.seconds + 2.0
        load = await asyncio.create_subprocess_exec(
            sys.executable, str(SELF), "--load", "--port", str(cport),
            "--rate", str(args.rate), "--seconds", str(load_s), "--conns", str(args.conns),
            stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(args.warmup)
        before, t0 = await scrape_all(), time.perf_counter()
        load_before = uptime()
        probes.base = probes.events
        for k in range(int(args.seconds * args.probe_rate)):
            due = t0 + k / args.probe_rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            probes.posted.append(time.perf_counter())
            probes.posted_wall_us.append(time.time_ns() // 1000)
            await post(http, hooks_url, probe_hook(sid, k))
        after, t1 = await scrape_all(), time.perf_counter()
        load_after = uptime()
        stdout, _ = await load.communicate()
        # Probes still on their way get up to 10 s more.
        await probes.wait(lambda: len(probes.arrived) >= len(probes.posted), 10.0)
        reader.cancel()
        await ws.close()
    bg = json.loads(stdout.decode().strip().splitlines()[-1])
    delays = [(probes.arrived[k] - probes.posted[k]) * 1000 for k in sorted(probes.arrived)]
    def rate(part: str, name: str) -> float:
        return (after[part].get(name, 0.0) - before[part].get(name, 0.0)) / (t1 - t0)

    produced = "agentwatch_producer_events_produced_total"
    validated = "agentwatch_worker_messages_total"
    folded = "agentwatch_widget_events_total"
    delay = "agentwatch_gateway_update_delay_seconds"
    stage_probes = [ProbeTimes(probes.base + k + 1, probes.posted_wall_us[k], wall)
                    for k, wall in sorted(probes.arrived_wall_us.items())]
    stages = await asyncio.to_thread(breakdown, pipe.bootstrap, pipe.prefix, sid, stage_probes)
    return {"delays": delays, "probes": len(probes.posted), "bg": bg, "stages": stages,
            "events_per_s": rate("collector", produced),
            "validated_per_s": rate("worker", validated),
            "folded_per_s": rate("worker", folded),
            "backlog": (after["collector"].get(produced, 0.0) - after["worker"].get(validated, 0.0),
                        after["worker"].get(validated, 0.0) - after["worker"].get(folded, 0.0)),
            "gateway_read": (histogram_quantile(before["gateway"], after["gateway"], delay, 0.5),
                             histogram_quantile(before["gateway"], after["gateway"], delay, 0.99)),
            "collector_to_client": probes.collector_to_client_ms,
            "uptime": (load_before, load_after)}


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    delays: list[float] = result["delays"]
    bg = result["bg"]
    print(f"background target: {args.rate:,.0f} events/s ({args.rate / 2:,.0f} PostToolUse "
          f"hooks/s x 2 events, {BG_SESSIONS} sessions)")
    print(f"background achieved: {bg['hooks'] / bg['seconds']:,.0f} hooks/s sent "
          f"({bg['failed']} refused); {result['events_per_s']:,.0f} events/s produced to Kafka "
          "by the collector during the probes")
    print(f"probes: {len(delays)} of {result['probes']} arrived at the dashboard client "
          f"({args.probe_rate:g}/s for {args.seconds:g} s)")
    if delays:
        print(f"e2e POST -> widget_update: p50 {pct(delays, 0.50):.0f} ms, "
              f"p95 {pct(delays, 0.95):.0f} ms, p99 {pct(delays, 0.99):.0f} ms, "
              f"max {max(delays):.0f} ms, mean {statistics.fmean(delays):.0f} ms "
              "(target p50 <= 150 ms, p99 <= 500 ms)")
    print(f"worker during the probes: {result['validated_per_s']:,.0f} ingest messages/s "
          f"validated, {result['folded_per_s']:,.0f} events/s folded into widgets; backlog at "
          f"the end: {result['backlog'][0]:,.0f} ingest messages not yet validated, "
          f"{result['backlog'][1]:,.0f} events validated, not yet folded (includes the "
          "events of the worker's open transaction, invisible until it commits)")
    p50, p99 = result["gateway_read"]
    print(f"widget update Kafka timestamp -> gateway read (its histogram): p50 {p50}, p99 {p99}")
    for line in result["stages"]:
        print(line)
    c2c: list[float] = result["collector_to_client"]
    if c2c:
        print(f"collector receive stamp -> client: p50 {pct(c2c, 0.5):.0f} ms, "
              f"p99 {pct(c2c, 0.99):.0f} ms over {len(c2c)} probes shown alone")
    before, after = result["uptime"]
    print(f"load average (1 / 5 / 15 min) before probes: {before}; after: {after}; "
          f"{os.cpu_count()} CPUs")


def run_load(args: argparse.Namespace) -> None:
    result = asyncio.run(background(args.port, args.rate / 2, args.seconds, args.conns))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=float, default=1000.0, help="background events/s")
    parser.add_argument("--seconds", type=float, default=45.0, help="probing time")
    parser.add_argument("--warmup", type=float, default=5.0, help="load before the probes")
    parser.add_argument("--probe-rate", type=float, default=2.0)
    parser.add_argument("--conns", type=int, default=16, help="background HTTP connections")
    parser.add_argument("--set", action="append", default=[], metavar="AGENTWATCH_X=VALUE",
                        help="a setting for every component (repeatable), e.g. "
                        "AGENTWATCH_WORKER__COMMIT_INTERVAL_MS=100; default: none, nothing tuned")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(args)
        return
    workdir = Path(tempfile.mkdtemp(prefix="aw-bench-e2e-"))
    overrides = dict(item.split("=", 1) for item in args.set)
    if bad := [name for name in overrides if not name.startswith("AGENTWATCH_")]:
        parser.error(f"--set takes AGENTWATCH_* settings, not {bad}")
    pipe = Pipeline(args.bootstrap, workdir, settings=overrides)
    print(f"private pipeline {pipe.prefix}, load average {uptime()}, settings "
          f"{overrides or 'all default'}", flush=True)
    try:
        cport, gport = pipe.start()
        result = asyncio.run(measure(args, pipe, cport, gport))
    finally:
        pipe.stop()
    report(args, result)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
