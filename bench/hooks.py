"""Collector figures: HTTP hook round trip, command-hook wall time, sustained events/s into Kafka.

Runs `agentwatch collector` as its own process against the local stack's Kafka (a throwaway
topic and spool), then:
1. posts PostToolUse hooks open-loop at a fixed rate (default 500/s) and reports round-trip
   p50/p99, with a kept-alive connection and with a new connection per hook;
2. runs the command hook (`python -S producers/hook_cmd.py`, what install-hooks writes, and
   `agentwatch hook`) sequentially and reports wall time p50/p99;
3. posts OTLP/protobuf log batches (1,000 api_request records each) as fast as it can and reports
   events/s from the first request to the last Kafka acknowledgement (the collector's own
   produced counter).

Usage: .venv/bin/python bench/hooks.py [--rate 500] [--seconds 20] [--cmd-runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import psutil
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from pipeline.settings import REPO_ROOT, load_settings
from pipeline.topics import TopicSpec, ensure_topics

HOOK_SCRIPT = REPO_ROOT / "producers" / "hook_cmd.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def hook(i: int) -> dict[str, object]:
    return {"session_id": f"bench-{i % 16:02d}", "hook_event_name": "PostToolUse",
            "transcript_path": "/home/dev/.claude/projects/x/s.jsonl", "cwd": "/home/dev/app",
            "permission_mode": "default", "tool_name": "Bash", "tool_use_id": f"toolu_{i:08d}",
            "tool_input": {"command": "pytest -q tests/unit", "description": "Run unit tests"},
            "tool_response": {"stdout": "....\n4 passed in 0.12s\n" * 5, "stderr": "",
                              "interrupted": False, "isImage": False},
            "duration_ms": 812}


async def wait_healthy(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{base}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("collector did not start")


async def produced(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("agentwatch_producer_events_produced_total{"))


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> int:
    """One HTTP/1.1 request on a raw stream: a client much lighter than aiohttp's, so the
    figures are the collector's more than the benchmark's."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


def _request(port: int, body: bytes, keepalive: bool) -> bytes:
    return (f"POST /hooks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keepalive else 'close'}\r\n\r\n").encode() + body


async def http_round_trips(port: int, rate: float, seconds: float, keepalive: bool) -> list[float]:
    """Open loop: hook i is sent at start + i/rate whatever the previous ones are doing."""
    latencies: list[float] = []
    requests = [_request(port, json.dumps(hook(i)).encode(), keepalive)
                for i in range(int(rate * seconds))]
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    start = time.perf_counter() + 0.2

    async def one(i: int, request: bytes) -> None:
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        if keepalive and idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        status = await _exchange(reader, writer, request)
        latencies.append(time.perf_counter() - t0)
        assert status == 200, status
        if keepalive:
            idle.append((reader, writer))
        else:
            writer.close()

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    for _, writer in idle:
        writer.close()
    return latencies


async def server_side(base: str, endpoint: str) -> str:
    """p50/p99 of the collector's own request histogram (bucket upper bounds)."""
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    buckets = []
    for line in text.splitlines():
        if line.startswith("agentwatch_collector_request_seconds_bucket{") and \
                f'endpoint="{endpoint}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1]

    def q(frac: float) -> str:
        bound = next(le for le, count in buckets if count >= frac * total)
        return f"<= {bound * 1000:g} ms"

    return f"collector-side {endpoint} time over {total:.0f} requests: p50 {q(0.5)}, p99 {q(0.99)}"


def command_hook_runs(argv: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], float]:
    """Wall times, and the mean CPU time (user + system) of one run, which load does not inflate."""
    body = json.dumps(hook(0)).encode()
    times = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, input=body, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
        assert proc.returncode == 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / runs
    return times, cpu


def otlp_batch(batch: int, n: int) -> bytes:
    def kv(key: str, value: object) -> KeyValue:
        if isinstance(value, str):
            return KeyValue(key=key, value=AnyValue(string_value=value))
        if isinstance(value, float):
            return KeyValue(key=key, value=AnyValue(double_value=value))
        return KeyValue(key=key, value=AnyValue(int_value=int(value)))  # type: ignore[call-overload]

    now = time.time_ns()
    records = [LogRecord(
        time_unix_nano=now + i, body=AnyValue(string_value="claude_code.api_request"),
        attributes=[kv("event.name", "api_request"), kv("session.id", f"bench-{i % 16:02d}"),
                    kv("model", "claude-sonnet-4-5"), kv("input_tokens", 1200 + i),
                    kv("output_tokens", 300), kv("cache_read_tokens", 9000),
                    kv("cost_usd", 0.0123), kv("duration_ms", 2345),
                    kv("prompt.id", f"p-{batch}")]) for i in range(n)]
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        scope_logs=[ScopeLogs(log_records=records)])])
    return request.SerializeToString()


async def sustained(base: str, batches: int, per_batch: int, concurrency: int
                    ) -> tuple[float, int]:
    bodies = [otlp_batch(b, per_batch) for b in range(batches)]
    total = batches * per_batch
    async with aiohttp.ClientSession() as http:
        before = await produced(http, base)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def sender() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with http.post(f"{base}/v1/logs", data=body,
                                     headers={"Content-Type": "application/x-protobuf"}) as resp:
                    assert resp.status == 200, resp.status
                    await resp.read()

        t0 = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        while await produced(http, base) - before < total:
            if time.perf_counter() - t0 > 300:
                raise SystemExit("Kafka did not acknowledge everything within 300 s")
            await asyncio.sleep(0.05)
        return time.perf_counter() - t0, total


def report(name: str, values: list[float]) -> str:
    return (f"{name}: n={len(values)} p50={pct(values, 0.5) * 1000:.2f} ms "
            f"p99={pct(values, 0.99) * 1000:.2f} ms max={max(values) * 1000:.2f} ms "
            f"mean={statistics.fmean(values) * 1000:.2f} ms")


async def measure(args: argparse.Namespace, base: str, env: dict[str, str], pid: int) -> None:
    await wait_healthy(base)
    port = int(base.rsplit(":", 1)[1])
    await http_round_trips(port, args.rate, 2, keepalive=True)  # warm up
    for keepalive in (True, False):
        lat = await http_round_trips(port, args.rate, args.seconds, keepalive)
        label = "kept-alive connection" if keepalive else "new connection per hook"
        print(report(f"HTTP hook round trip at {args.rate:.0f}/s, {label}", lat))
    print(await server_side(base, "/hooks"))

    for name, argv in (
        ("bare interpreter start (floor), python -S -c pass", [sys.executable, "-S", "-c", "pass"]),
        ("command hook, python -S producers/hook_cmd.py", [sys.executable, "-S", str(HOOK_SCRIPT)]),
        ("command hook, agentwatch hook", [str(Path(sys.executable).parent / "agentwatch"), "hook"]),
    ):
        runs = args.cmd_runs if "-S" in argv else max(20, args.cmd_runs // 4)
        await asyncio.to_thread(command_hook_runs, argv, 5, env)
        times, cpu = await asyncio.to_thread(command_hook_runs, argv, runs, env)
        print(report(name, times) + f" cpu/run={cpu * 1000:.1f} ms")

    def cpu_seconds() -> tuple[float, float]:
        parent = psutil.Process(pid)
        workers = parent.children(recursive=True)
        own = parent.cpu_times()
        return (own.user + own.system,
                sum(t.user + t.system for t in (proc.cpu_times() for proc in workers)))

    main0, workers0 = cpu_seconds()
    elapsed, total = await sustained(base, args.batches, args.batch_size, args.concurrency)
    main1, workers1 = cpu_seconds()
    print(f"load average now {os.getloadavg()[0]:.1f}; collector CPU per event: "
          f"{(main1 - main0) / total * 1e6:.1f} us in the collector process (HTTP, spool, "
          f"forwarder, librdkafka) + {(workers1 - workers0) / total * 1e6:.1f} us in its OTLP "
          "workers (decode, map, encode)")
    print(f"sustained OTLP -> Kafka: {total} events in {elapsed:.2f} s = "
          f"{total / elapsed:,.0f} events/s (batches of {args.batch_size}, "
          f"{args.concurrency} concurrent requests, acknowledged by Kafka)")


def main(args: argparse.Namespace) -> None:
    settings = load_settings()
    topic = f"bench.collector.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka, [TopicSpec(topic, settings.topics.partitions, 1)])
    work = Path(tempfile.mkdtemp(prefix="aw-bench-hooks-"))
    port = free_port()
    env = {**os.environ, "AGENTWATCH_TOPICS__INGEST": topic,
           "AGENTWATCH_SPOOL__DIR": str(work / "spool"),
           "AGENTWATCH_COLLECTOR__PORT": str(port),
           "AGENTWATCH_COLLECTOR__INBOX_DIR": str(work / "inbox"),
           "AGENTWATCH_COLLECTOR__HOOK_LOG": str(work / "hook.log"),
           "AGENTWATCH_LOG_LEVEL": "WARNING"}
    base = f"http://127.0.0.1:{port}"
    with open(work / "collector.log", "wb") as log:
        collector = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "collector"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"collector pid {collector.pid} on {base}, topic {topic}, "
          f"Kafka {settings.kafka.bootstrap_servers}, load average {os.getloadavg()[0]:.1f}")
    try:
        asyncio.run(measure(args, base, env, collector.pid))
    finally:
        collector.terminate()
        collector.wait(60)
        from confluent_kafka.admin import AdminClient

        AdminClient(settings.kafka.client_config()).delete_topics([topic])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cmd-runs", type=int, default=200)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    main(parser.parse_args())
