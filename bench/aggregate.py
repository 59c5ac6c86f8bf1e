"""Widgets + patterns throughput of one worker, and the delay from an event to its widget update.

Run: .venv/bin/python bench/aggregate.py [--events 200000] [--sessions 200] [--rate 2000]
Needs the local stack's Kafka (`agentwatch up --services-only`). Starts `agentwatch worker` on
unique topics (deleted afterwards) and measures:

1. throughput: N events are written to the events topic first, then the worker starts; the
   figure is N / (time from the worker's first widget update to the update that shows the last
   event of every session folded in);
2. delay: with the worker idle, events are produced at --rate/s; for every event, the delay is
   the time from its produce() call to the arrival (at a consumer) of the first session_summary
   update that counts it. Coalescing is included, and so is the consumer's fetch (an overestimate).
   ``to_update_sent`` is the issue's own definition, without the reader's fetch: from the
   event's produce() to the update's CreateTime (stamped by the worker's producer as it queues
   the update), both wall clock on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from pipeline.model import new_event, now_us
from pipeline.serde import AvroSerde

REPO = Path(__file__).resolve().parent.parent
SPACING_US = 1_000_000
BOOTSTRAP = os.environ.get("AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def _step(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    r = rng.random()
    if r < 0.25:
        return "file.read", {"path": f"src/pkg{i % 9}/mod{i % 31}.py"}
    if r < 0.40:
        return "file.write", {"path": f"src/pkg{i % 9}/mod{i % 31}.py", "lines_added": 3,
                              "lines_removed": 1}
    if r < 0.58:
        return "command.executed", {"binary": rng.choice(["pytest", "cargo", "ls", "git"]),
                                    "args": ["build"] if r < 0.45 else ["-q"],
                                    "exit_code": 0 if rng.random() < 0.8 else 1,
                                    "duration_ms": 800, "cpu_user_ms": 500,
                                    "peak_memory_mib": 120.0 + rng.random() * 50}
    if r < 0.75:
        return "llm.request", {"model": rng.choice(["claude-sonnet", "claude-haiku"]),
                               "input_tokens": 4000, "output_tokens": 600, "cost_usd": 0.002}
    if r < 0.83:
        return "resource.sample", {"memory_mib": 300 + rng.random() * 200, "cpu_pct": 40.0,
                                   "memory_limit_mib": 4096.0}
    if r < 0.90:
        return "test.executed", {"suite": f"tests/test_{i % 7}.py", "test_name": f"t{i % 13}",
                                 "outcome": "passed" if rng.random() < 0.85 else "failed",
                                 "duration_ms": 50 + rng.randint(0, 100)}
    if r < 0.95:
        return "network.request", {"protocol": "https", "domain": "pypi.org", "bytes_sent": 300,
                                   "bytes_received": 9000}
    return "agent.task.progress", {"progress_pct": float(i % 100), "phase": "coding"}


def make_events(sessions: int, per_session: int, tag: str, seed: int = 7) -> list[tuple[str, bytes]]:
    """(session_id, encoded event), sessions interleaved like concurrent agents."""
    rng = random.Random(seed)
    serde = AvroSerde()
    # Real sessions emit about an event a second; ending now keeps windows (cost, compile loop)
    # as full as in a live session rather than holding a whole session in one window.
    t0 = now_us() - per_session * SPACING_US
    out: list[tuple[str, bytes]] = []
    for i in range(per_session):
        for s in range(sessions):
            sid = f"{tag}-{s}"
            etype, payload = ("session.started", {}) if i == 0 else _step(rng, i)
            ev = new_event(etype, sid, payload, agent="claude-code", source="hook",
                           timestamp_us=t0 + i * SPACING_US + s)
            out.append((sid, serde.encode_event(ev)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    def __init__(self, prefix: str, partitions: int, workdir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.prefix, self.port = prefix, free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        for name in ("ingest", "events", "widgets", "patterns", "dlq"):
            self.env[f"AGENTWATCH_TOPICS__{name.upper()}"] = f"{prefix}.{name}"
        self.env.update({"AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
                         "AGENTWATCH_TOPICS__PARTITIONS": str(partitions),
                         "AGENTWATCH_WORKER__APP_ID": prefix,
                         "AGENTWATCH_WORKER_HTTP__PORT": str(self.port),
                         "AGENTWATCH_STACK__DIR": str(workdir), "AGENTWATCH_LOG_LEVEL": "WARNING",
                         # Events are written straight to the events topic: the aggregates alone.
                         "AGENTWATCH_WORKER__STAGES": '["aggregates"]',
                         **(extra_env or {})})
        self.log = (workdir / "worker.log").open("wb")
        self.proc: subprocess.Popen[bytes] | None = None

    def create_topics(self) -> None:
        from pipeline.settings import KafkaSettings, TopicSettings
        from pipeline.topics import ensure_topics, topic_specs

        names = {n: f"{self.prefix}.{n}" for n in ("ingest", "events", "widgets", "patterns", "dlq")}
        topics = TopicSettings(partitions=int(self.env["AGENTWATCH_TOPICS__PARTITIONS"]), **names)
        ensure_topics(KafkaSettings(bootstrap_servers=BOOTSTRAP),
                      [s for s in topic_specs(topics) if s.name in names.values()])

    def start(self) -> float:
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], cwd=REPO,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        while True:
            assert self.proc.poll() is None, "worker exited; see its log"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if json.loads(r.read()).get("assigned_partitions"):
                        return time.monotonic()
            except OSError:
                pass
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        """The worker's sample ``name`` (exact, labels included), 0 when absent."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.log.close()
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                fut.result()


def widget_reader(topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10})
    c.subscribe([topic])
    return c


def summaries(reader: Consumer, serde: AvroSerde,
              timeout: float) -> list[tuple[float, str, int, float]]:
    """(arrival monotonic time, session, events folded, time the worker sent it) of
    session_summary updates; the last is the record's CreateTime (wall clock, seconds), which
    aiokafka stamps when the worker appends the update to a batch: when it leaves."""
    out = []
    batch = reader.consume(num_messages=5000, timeout=timeout)
    arrived = time.monotonic()
    for msg in batch:
        # The key names the widget: skip decoding the others (the reader must keep up).
        if msg.error() is not None or not (msg.key() or b"").endswith(b"/session_summary"):
            continue
        _n, rec = serde.decode(msg.value())
        out.append((arrived, rec["session_id"], json.loads(rec["data_json"])["events"],
                    msg.timestamp()[1] / 1000.0))
    return out


def produce_all(events: list[tuple[str, bytes]], topic: str) -> None:
    # No compression: aiokafka (under Faust) reads lz4 only with the optional lz4 package.
    p = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 20, "partitioner": "murmur2_random"})
    for sid, value in events:
        while True:
            try:
                p.produce(topic, key=sid.encode(), value=value)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(60)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(worker: Worker, args: argparse.Namespace, serde: AvroSerde) -> dict[str, Any]:
    per = args.events // args.sessions
    events = make_events(args.sessions, per, "tp")
    produce_all(events, f"{worker.prefix}.events")
    reader = widget_reader(f"{worker.prefix}.widgets")
    ready = worker.start()
    assert worker.proc is not None
    cpu_ready = cpu_seconds(worker.proc.pid)
    load = [float(x) for x in Path("/proc/loadavg").read_text().split()[:1]]
    done: dict[str, int] = {}
    first: float | None = None
    last = ready
    while len([s for s, n in done.items() if n >= per]) < args.sessions:
        got = summaries(reader, serde, 1.0)
        for arrived, sid, n, _left in got:
            first = arrived if first is None else first
            done[sid] = max(done.get(sid, 0), n)
            last = arrived
        if time.monotonic() - ready > 600 or worker.proc is None or worker.proc.poll() is not None:
            raise SystemExit("throughput run failed (worker exited or 10 minutes passed)")
    cpu = cpu_seconds(worker.proc.pid) - cpu_ready
    load += [float(x) for x in Path("/proc/loadavg").read_text().split()[:1]]
    reader.close()
    assert first is not None
    n = per * args.sessions
    return {"events": n, "sessions": args.sessions, "seconds_from_first_update": round(last - first, 2),
            "events_per_s": round(n / (last - first)),
            "events_per_s_from_ready": round(n / (last - ready)),
            "worker_cpu_s": round(cpu, 1), "events_per_worker_cpu_s": round(n / cpu),
            "load_avg_1m_start_end": load}


def delay(worker: Worker, args: argparse.Namespace, serde: AvroSerde) -> dict[str, Any]:
    per = max(2, int(args.rate * args.seconds) // args.sessions)
    events = make_events(args.sessions, per, "lat", seed=11)
    reader = widget_reader(f"{worker.prefix}.widgets")
    # Join the group and read past the throughput phase's updates: a reader still catching up
    # would add its own lag to every delay.
    while summaries(reader, serde, 1.0) or not reader.assignment():
        pass
    # The reader runs in its own thread, so the paced producer never delays its reads.
    seen: list[tuple[float, str, int, float]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.extend(summaries(reader, serde, 0.05))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    p = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 1, "partitioner": "murmur2_random"})
    sent: dict[str, list[float]] = {}
    sent_wall: dict[str, list[float]] = {}
    gap = 1.0 / args.rate
    start = time.monotonic()
    for i, (sid, value) in enumerate(events):
        wait = start + i * gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sent.setdefault(sid, []).append(time.monotonic())
        sent_wall.setdefault(sid, []).append(time.time())
        p.produce(f"{worker.prefix}.events", key=sid.encode(), value=value)
        p.poll(0)
    p.flush(30)
    want = {sid: len(times) for sid, times in sent.items()}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        top: dict[str, int] = {}
        for _a, sid, n, _left in list(seen):
            top[sid] = max(top.get(sid, 0), n)
        if all(top.get(sid, 0) >= n for sid, n in want.items()):
            break
        time.sleep(0.2)
    stop.set()
    thread.join()
    reader.close()
    pending: dict[str, int] = {}
    delays: list[float] = []
    by_time: list[tuple[float, float]] = []
    for arrived, sid, n, _left in sorted(seen):
        _match(sent, pending, delays, arrived, sid, n, by_time)
    # The definition: from the event entering the events topic (its produce() here) to
    # its update leaving the worker, without the reader's fetch. Both wall clock, same machine.
    pending_left: dict[str, int] = {}
    left: list[float] = []
    for _a, sid, n, left_at in sorted(seen, key=lambda r: r[3]):
        _match(sent_wall, pending_left, left, left_at, sid, n)
    left.sort()
    q_left = statistics.quantiles(left, n=100)
    delays.sort()
    q = statistics.quantiles(delays, n=100)
    # Per second of the run: shows whether the tail is steady or one stall.
    seconds: dict[int, list[float]] = {}
    for sent_at, d in by_time:
        seconds.setdefault(int(sent_at - start), []).append(d)
    worst = {k: round(max(v) * 1000) for k, v in sorted(seconds.items())}
    return {"events": len(events), "matched": len(delays), "rate_per_s": args.rate,
            "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "max_ms": round(delays[-1] * 1000, 1), "worst_ms_by_second": worst,
            "to_update_sent": {"p50_ms": round(q_left[49] * 1000, 1),
                               "p99_ms": round(q_left[98] * 1000, 1),
                               "max_ms": round(left[-1] * 1000, 1)}}


def _match(sent: dict[str, list[float]], pending: dict[str, int], delays: list[float],
           arrived: float, sid: str, n: int, by_time: list[tuple[float, float]] | None = None) -> None:
    times = sent.get(sid, [])
    i = pending.get(sid, 0)
    while i < min(n, len(times)):
        delays.append(arrived - times[i])
        if by_time is not None:
            by_time.append((times[i], arrived - times[i]))
        i += 1
    pending[sid] = i


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--rate", type=int, default=2000, help="events/s in the delay phase")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of the delay phase")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the worker, e.g. AGENTWATCH_WIDGETS__FLUSH_TICK_MS=10")
    args = ap.parse_args()
    extra = dict(item.split("=", 1) for item in args.worker_env)
    serde = AvroSerde()
    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(f"bench{uuid.uuid4().hex[:8]}", args.partitions, Path(tmp), extra)
        try:
            worker.create_topics()
            tp = throughput(worker, args, serde)
            print(json.dumps({"throughput": tp}), flush=True)
            count = worker.metric("agentwatch_aggregates_checkpoint_seconds_count")
            total = worker.metric("agentwatch_aggregates_checkpoint_seconds_sum")
            lat = delay(worker, args, serde)
            count = worker.metric("agentwatch_aggregates_checkpoint_seconds_count") - count
            total = worker.metric("agentwatch_aggregates_checkpoint_seconds_sum") - total
            # How long the loop spent in checkpoints during the delay phase (0 on Faust).
            lat["checkpoints"] = {"n": int(count),
                                  "mean_ms": round(1000 * total / count, 1) if count else None}
            print(json.dumps({"delay": lat}), flush=True)
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
