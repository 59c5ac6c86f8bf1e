"""Gateway benchmark: idle WebSocket clients one gateway process holds, and the delay from a widget
update produced to Kafka to its arrival at every one of 1,000 connected clients.

    .venv/bin/python bench/gateway.py [--idle 10000] [--clients 1000] [--updates 40]

Needs the local stack's Kafka. Starts `agentwatch gateway` as a subprocess on fresh topics (the
clients live in this process, so client work does not count against the gateway), opens the idle
clients in batches, then subscribes ``--clients`` of them to one session and produces updates
whose ``timestamp`` is the wall clock at produce time: delay = arrival - timestamp. Prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import psutil
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pipeline.model import WIDGET_UPDATE
from pipeline.serde import AvroSerde

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789abcdef0123456789"
TS = re.compile(r'"timestamp":(\d+),"seq":(\d+)')
PARTITIONS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "bench", "role": "admin", "aud": "agentwatch", "iss": "agentwatch",
                       "iat": now, "exp": now + 7200}, SECRET, algorithm="HS256")


def record(sid: str, widget: str, seq: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": sid, "widget": widget, "data_json": json.dumps(payload), "version": seq,
            "timestamp": time.time_ns() // 1000, "agent": "bench"}


class Bench:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"benchgw{uuid.uuid4().hex[:8]}"
        self.widgets = f"{self.prefix}.widgets"
        self.port = free_port()
        self.serde = AvroSerde()
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.proc: subprocess.Popen[bytes] | None = None

    def setup(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topics = [NewTopic(self.widgets, PARTITIONS, 1, config={"cleanup.policy": "compact"}),
                  NewTopic(f"{self.prefix}.patterns", PARTITIONS, 1)]
        for fut in admin.create_topics(topics).values():
            fut.result()

    def produce(self, rec: dict[str, Any]) -> None:
        part = zlib.crc32(rec["session_id"].encode()) % PARTITIONS
        self.producer.produce(self.widgets, key=f"{rec['session_id']}/{rec['widget']}".encode(),
                              value=self.serde.encode(WIDGET_UPDATE, rec), partition=part)
        self.producer.poll(0)

    def start_gateway(self, workdir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update({
            "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "AGENTWATCH_TOPICS__WIDGETS": self.widgets,
            "AGENTWATCH_TOPICS__PATTERNS": f"{self.prefix}.patterns",
            "AGENTWATCH_GATEWAY__PORT": str(self.port),
            "AGENTWATCH_GATEWAY__JWT_SECRET": SECRET,
            "AGENTWATCH_GATEWAY__RATE_LIMIT_RPS": "1000000",
            "AGENTWATCH_GATEWAY__RATE_LIMIT_BURST": "1000000",
            "AGENTWATCH_GATEWAY__REPLAY_TO_KAFKA": "false",
            # Idle bench clients do not read (so do not answer pings) while others connect.
            "AGENTWATCH_GATEWAY__HEARTBEAT_S": "600",
            "AGENTWATCH_GATEWAY__MAX_CLIENTS": "50000",
            "AGENTWATCH_STACK__DIR": str(workdir),
            "AGENTWATCH_LOG_LEVEL": "WARNING",
        })
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "gateway"], cwd=REPO,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if json.loads(r.read()).get("caught_up"):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise SystemExit("gateway did not start")

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
            return dict(json.loads(r.read()))

    def histogram(self, name: str, bounds: tuple[str, ...]) -> str:
        """One of the gateway's own histograms, as cumulative bucket counts."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        buckets = re.findall(name + r'_bucket\{le="([^"]+)"\} (\S+)', text)
        return " ".join(f"<={le}:{int(float(n))}" for le, n in buckets if le in bounds)

    def rss_mib(self) -> float:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss / 1024 / 1024

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for fut in admin.delete_topics([self.widgets, f"{self.prefix}.patterns"]).values():
            with contextlib.suppress(Exception):
                fut.result()


async def open_clients(url: str, headers: dict[str, str], n: int, batch: int = 200
                       ) -> tuple[aiohttp.ClientSession, list[aiohttp.ClientWebSocketResponse]]:
    connector = aiohttp.TCPConnector(limit=0)
    http = aiohttp.ClientSession(connector=connector)
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    for start in range(0, n, batch):
        got = await asyncio.gather(*(http.ws_connect(url, headers=headers, heartbeat=None,
                                                     autoping=True, max_msg_size=0)
                                     for _ in range(min(batch, n - start))), return_exceptions=True)
        for ws in got:
            if isinstance(ws, aiohttp.ClientWebSocketResponse):
                sockets.append(ws)
        # Each client gets its snapshot first; read it so buffers stay small.
        await asyncio.gather(*(ws.receive(timeout=30) for ws in sockets[-len(got):]),
                             return_exceptions=True)
    return http, sockets


async def measure(bench: Bench, idle: int, clients: int, updates: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token()}"}
    sid = f"bench-{uuid.uuid4().hex[:8]}"
    bench.produce(record(sid, "session_summary", 1, {"user_id": "bench"}))
    bench.producer.flush(10)
    await asyncio.sleep(1.0)
    base = f"ws://127.0.0.1:{bench.port}"
    out: dict[str, Any] = {}

    started = time.monotonic()
    idle_http, idle_sockets = await open_clients(f"{base}/sessions/{sid}", headers, idle)
    out["idle_requested"] = idle
    out["idle_held"] = len(idle_sockets)
    out["idle_connect_s"] = round(time.monotonic() - started, 1)
    await asyncio.sleep(2.0)
    health = bench.health()
    out["gateway_clients"] = health["clients"]
    out["gateway_rss_mib_idle"] = round(bench.rss_mib(), 1)
    await asyncio.gather(*(ws.close() for ws in idle_sockets), return_exceptions=True)
    await idle_http.close()
    # Let the gateway finish closing the idle sockets before measuring delays.
    for _ in range(120):
        if bench.health()["clients"] == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)

    http, sockets = await open_clients(f"{base}/sessions/{sid}", headers, clients)
    out["latency_clients"] = len(sockets)
    delays: list[float] = []
    by_update: dict[int, list[float]] = {}

    async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            arrived = time.time_ns() // 1000
            m = TS.search(msg.data)
            if m and msg.data.startswith('{"message_type":"widget_update"'):
                delay = (arrived - int(m.group(1))) / 1000.0
                delays.append(delay)
                by_update.setdefault(int(m.group(2)), []).append(delay)

    # The clients are the instrument, not the system measured: with 1,000 sockets in this
    # process its own cyclic-GC passes took up to 1.5 s and were counted as gateway delay.
    gc.collect()
    gc.freeze()
    gc.disable()
    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    for i in range(updates):
        bench.produce(record(sid, "cost", 2 + i, {"total_usd": i / 100}))
        bench.producer.flush(5)
        await asyncio.sleep(0.25)
    await asyncio.sleep(3.0)
    gc.enable()
    gc.unfreeze()
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await http.close()
    delays.sort()
    expected = len(sockets) * updates
    out["updates"] = updates
    out["deliveries"] = f"{len(delays)}/{expected}"
    if delays:
        q = statistics.quantiles(delays, n=100)
        out["delay_ms_p50"] = round(q[49], 1)
        out["delay_ms_p99"] = round(q[98], 1)
        out["delay_ms_max"] = round(delays[-1], 1)
        # Per update: when its first client had it (Kafka and the gateway's read) and how long
        # the last client waited after the first (fan-out plus the clients' own parsing).
        first = sorted(min(d) for d in by_update.values())
        spread = sorted(max(d) - min(d) for d in by_update.values())
        out["first_client_ms_p50_max"] = f"{statistics.median(first):.1f} / {first[-1]:.1f}"
        out["spread_ms_p50_max"] = f"{statistics.median(spread):.1f} / {spread[-1]:.1f}"
    # Kafka timestamp -> the gateway reads the record; then the fan-out to every client.
    out["gateway_read_delay_s"] = bench.histogram(
        "agentwatch_gateway_update_delay_seconds", ("0.025", "0.05", "0.1", "0.25", "+Inf"))
    out["gateway_fanout_s"] = bench.histogram(
        "agentwatch_gateway_fanout_seconds", ("0.005", "0.01", "0.025", "0.05", "0.1", "+Inf"))
    out["gateway_rss_mib_after"] = round(bench.rss_mib(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--updates", type=int, default=40)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle * 2 + 1000)), hard))
    bench = Bench(args.bootstrap)
    bench.setup()
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / bench.prefix
    workdir.mkdir(parents=True, exist_ok=True)
    bench.start_gateway(workdir)
    try:
        result = asyncio.run(measure(bench, args.idle, args.clients, args.updates))
    finally:
        bench.stop()
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
