"""Host sampler overhead: the CPU and memory `agentwatch sampler` itself uses at a 1 s interval.

Runs the real component (`python -m pipeline.cli sampler`, psutil source, publishing to a
throwaway topic of the local stack's Kafka) and measures its process from outside (psutil
cpu_times over a window, after a warm-up) in three phases:
  A. no agent on the host (the cost of watching for one);
  B. `--agents` stand-in agents (Python processes found by a marker in their script path, as
     Claude Code is by claude-code/cli.js), each with `--children` child processes and two
     open TCP connections, every one matched to a session served by a stand-in collector view;
  C. as B, plus one Bash call running in agent 0 (a shell and a `sleep`): fast ticks every
     `--command-interval` seconds on that call's processes.
Also prints the host's process and TCP socket counts and the cost of one sock_diag dump, which
bound what the sampler does per tick.

Usage: .venv/bin/python bench/sampler.py [--seconds 30] [--agents 3] [--children 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

from pipeline.settings import load_settings
from pipeline.topics import TopicSpec, ensure_topics

AGENT = """
import socket, subprocess, sys
marker, children, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kids = [subprocess.Popen(["sleep", "100000"]) for _ in range(children)]
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
for line in sys.stdin:
    subprocess.run(["/bin/sh", "-c", line.strip()])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class View:
    """The collector's GET /api/active-sessions, served from memory."""

    def __init__(self) -> None:
        self.sessions: list[dict[str, Any]] = []

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        view = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"now_us": int(time.time() * 1e6),
                                   "sessions": view.sessions}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def sink() -> Iterator[int]:
    """A TCP listener that accepts and holds connections (the agents' 'API connections')."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def measure(proc: psutil.Process, seconds: float) -> tuple[float, int, int]:
    """(% of one core, RSS bytes, USS bytes) of the process over ``seconds``."""
    before, start = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, wall = proc.cpu_times(), time.monotonic() - start
    used = (after.user - before.user) + (after.system - before.system)
    mem = proc.memory_full_info()
    return 100.0 * used / wall, mem.rss, mem.uss


def host_context() -> str:
    tcp = sum(max(0, len(Path(f"/proc/net/{n}").read_text().splitlines()) - 1)
              for n in ("tcp", "tcp6")) if sys.platform.startswith("linux") else -1
    line = f"host: {len(psutil.pids())} processes, {tcp} TCP sockets, {os.cpu_count()} cores, " \
           f"load average {os.getloadavg()[0]:.1f}"
    if sys.platform.startswith("linux"):
        from producers.sampler.linux import dump_tcp

        started = time.process_time()
        for _ in range(20):
            dump_tcp()
        line += f"; one sock_diag dump costs {(time.process_time() - started) / 20 * 1000:.2f} " \
                "ms CPU"
    return line


def main(args: argparse.Namespace) -> None:
    settings = load_settings()
    topic = f"bench.sampler.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka, [TopicSpec(topic, 1, 1)])
    work = Path(tempfile.mkdtemp(prefix="aw-bench-sampler-"))
    marker = f"aw-bench-agent-{uuid.uuid4().hex[:6]}"
    script = work / f"{marker}.py"
    script.write_text(AGENT)
    view = View()
    server, url = view.serve()
    port = free_port()
    env = {**os.environ, "AGENTWATCH_TOPICS__INGEST": topic,
           "AGENTWATCH_SPOOL__DIR": str(work / "spool"), "AGENTWATCH_LOG_LEVEL": "WARNING",
           "AGENTWATCH_SAMPLER__PORT": str(port), "AGENTWATCH_SAMPLER__COLLECTOR_URL": url,
           "AGENTWATCH_SAMPLER__INTERVAL_S": str(args.interval),
           "AGENTWATCH_SAMPLER__COMMAND_INTERVAL_S": str(args.command_interval),
           "AGENTWATCH_SAMPLER__PROCESS_NAMES": "[]",
           "AGENTWATCH_SAMPLER__CMDLINE_PATTERNS": json.dumps([marker]),
           "AGENTWATCH_SAMPLER__INCLUDE_LOOPBACK": "true"}
    print(host_context())
    agents: list[subprocess.Popen[bytes]] = []
    with sink() as sink_port, open(work / "sampler.log", "wb") as log:
        sampler = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sampler"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(sampler.pid)
        try:
            time.sleep(args.warmup)
            cpu, rss, uss = measure(proc, args.seconds)
            print(f"A. no agent:        {cpu:6.3f}% of one core, RSS {rss / 2**20:5.1f} MiB "
                  f"(USS {uss / 2**20:5.1f} MiB)")
            now_us = int(time.time() * 1e6)
            for i in range(args.agents):
                cwd = work / f"agent-{i}"
                cwd.mkdir()
                agents.append(subprocess.Popen(
                    [sys.executable, str(script), marker, str(args.children), str(sink_port)],
                    cwd=cwd, stdin=subprocess.PIPE))
                view.sessions.append({"session_id": str(uuid.uuid4()), "cwd": str(cwd),
                                      "started_us": now_us, "last_seen_us": now_us,
                                      "calls": []})
            time.sleep(args.warmup)
            cpu, rss, uss = measure(proc, args.seconds)
            n = args.agents * (args.children + 1)
            print(f"B. {args.agents} agents, {n} processes, {2 * args.agents} connections: "
                  f"{cpu:6.3f}% of one core, RSS {rss / 2**20:5.1f} MiB "
                  f"(USS {uss / 2**20:5.1f} MiB)")
            command = f"sleep {args.seconds + 3 * args.warmup}; true"
            view.sessions[0]["calls"] = [{
                "tool_use_id": "toolu_bench", "tool_name": "Bash", "command": command,
                "started_us": int(time.time() * 1e6), "background": False}]
            stdin = agents[0].stdin
            assert stdin is not None
            stdin.write(command.encode() + b"\n")
            stdin.flush()
            time.sleep(args.warmup)
            cpu, rss, uss = measure(proc, args.seconds)
            print(f"C. as B + a Bash call sampled every {args.command_interval} s: "
                  f"{cpu:6.3f}% of one core, RSS {rss / 2**20:5.1f} MiB "
                  f"(USS {uss / 2**20:5.1f} MiB)")
            metrics = urlopen_text(f"http://127.0.0.1:{port}/metrics")
            for kind in ("full", "fast"):
                total = metric(metrics, "agentwatch_sampler_tick_seconds_sum", kind)
                count = metric(metrics, "agentwatch_sampler_tick_seconds_count", kind)
                if count:
                    print(f"   {kind} ticks: {int(count)}, mean wall {total / count * 1000:.2f} ms")
            events = [line for line in metrics.splitlines()
                      if line.startswith("agentwatch_sampler_events_total")]
            print("   events:", ", ".join(line.split("{")[1].replace('"} ', ": ")
                                        for line in events))
            print(f"   the sampler's own gauge: "
                  f"{metric(metrics, 'agentwatch_sampler_cpu_percent'):.3f}% of one core")
        finally:
            for agent in agents:
                # The agents' children (sleep) would outlive them: end the whole tree, by pid.
                for child in psutil.Process(agent.pid).children(recursive=True):
                    child.kill()
                agent.kill()
                agent.wait()
            sampler.terminate()
            sampler.wait(60)
            server.shutdown()
            from confluent_kafka.admin import AdminClient

            AdminClient(settings.kafka.client_config()).delete_topics([topic])


def urlopen_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def metric(text: str, name: str, kind: str | None = None) -> float:
    for line in text.splitlines():
        if line.startswith(name) and (kind is None or f'kind="{kind}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--command-interval", type=float, default=0.25)
    main(parser.parse_args())
