"""End-to-end throughput of `agentwatch worker`: ingest -> validate/redact/enrich -> events.

Run: .venv/bin/python bench/worker.py [--events N] [--partitions P] [--text-bytes B]
     [--guarantee exactly_once|at_least_once] [--batch-max M] [--processes P] [--in-process]
     [--redact-only]

Needs the local stack's Kafka (`agentwatch up`). Fills a fresh ingest topic with N Claude
Code-like events (bench/redact.py's generator: ~B characters of ordinary session text per event,
2% with a planted secret) plus 1% garbage, then starts one worker as a subprocess
(`python -m pipeline.cli worker`, its own topics and consumer group) and times how long it takes
to drain the backlog into events + dlq, all committed. Prints wall-clock events/s and events per
CPU-second of the worker process (the load-independent figure on a shared machine), then checks
that every good event arrived exactly once (read_committed, by event_id). ``--in-process`` also
times ``EventProcessor.process`` alone on the same messages, for the share of the pure work.
Topics are deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.serde import AvroSerde
from pipeline.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redact import make_events

REPO = Path(__file__).resolve().parent.parent

def build_messages(n: int, text_bytes: int, seed: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, value) pairs and how many of them are good events.

    A few generated events are invalid on purpose of the generator (a planted secret with raw
    quotes inside OtherEvent's JSON string): they count as expected dead letters.
    """
    from processors.validate import CleanEvent

    serde = AvroSerde()
    rng = random.Random(seed)
    out: list[tuple[bytes, bytes]] = []
    for ev in make_events(n, text_bytes, 0.02, seed=seed):
        out.append((ev["session_id"].encode(), serde.encode_event(ev)))
        if rng.random() < 0.01:
            out.append((b"garbage", bytes(rng.randrange(256) for _ in range(rng.randrange(8, 200)))))
    # What the worker must produce is what its pure function says, message by message.
    processor, meta = _processor()
    good = sum(isinstance(processor.process(v, meta), CleanEvent) for _, v in out)
    return out, good


def _processor() -> tuple[Any, Any]:
    from pipeline.redaction import Redactor, redact_raw
    from processors.deadletters import SourceMeta
    from processors.validate import EventProcessor

    redactor = Redactor()
    processor = EventProcessor(AvroSerde(), redactor,
                               functools.partial(redact_raw, redactor=redactor))
    return processor, SourceMeta("ingest", 0, 0, None)


def fill(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 20, "compression.type": "lz4", "enable.idempotence": True})
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processed(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("agentwatch_worker_messages_total{"))


def count_committed(bootstrap: str, topic: str) -> tuple[int, int]:
    """(messages, distinct TelemetryEvent ids; 0 for other records) of ``topic``, read_committed."""
    serde = AvroSerde()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-unused",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    total, ids, idle = 0, set(), 0
    while idle < 3:
        batch = consumer.consume(10000, 0.5)
        idle = 0 if batch else idle + 1
        for m in batch:
            if m.error():
                continue
            total += 1
            name, record = serde.decode(m.value())
            if name.endswith("TelemetryEvent"):
                ids.add(record["event_id"])
    consumer.close()
    return total, len(ids)


def run_worker(args: argparse.Namespace, bootstrap: str, topics: dict[str, str], app_id: str,
               n: int, workdir: Path) -> dict[str, float]:
    port = free_port()
    tag = topics["ingest"]
    env = {**os.environ,
           "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "AGENTWATCH_TOPICS__INGEST": topics["ingest"],
           "AGENTWATCH_TOPICS__EVENTS": topics["events"],
           "AGENTWATCH_TOPICS__DLQ": topics["dlq"],
           "AGENTWATCH_TOPICS__WIDGETS": f"{tag}.widgets",
           "AGENTWATCH_TOPICS__PATTERNS": f"{tag}.patterns",
           "AGENTWATCH_TOPICS__PARTITIONS": str(args.partitions),
           "AGENTWATCH_WORKER__APP_ID": app_id,
           "AGENTWATCH_WORKER__PROCESSING_GUARANTEE": args.guarantee,
           "AGENTWATCH_WORKER__BATCH_MAX": str(args.batch_max),
           "AGENTWATCH_WORKER__PROCESSES": str(args.processes),
           "AGENTWATCH_WORKER_HTTP__PORT": str(port),
           "AGENTWATCH_STACK__DIR": str(workdir),
           "AGENTWATCH_LOG_LEVEL": "WARNING",
           # --redact-only: a worker that runs the first stage only (worker.stages).
           "AGENTWATCH_WORKER__STAGES": '["ingest"]' if args.redact_only
           else '["ingest", "aggregates"]'}
    log = (workdir / "worker.log").open("wb")
    command = [sys.executable, "-m", "pipeline.cli", "worker"]
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while processed(port) <= 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start; see {workdir / 'worker.log'} (kept)")
            time.sleep(0.02)
        t0, cpu0, done0 = time.monotonic(), tree_cpu(ps), processed(port)
        while (done := processed(port)) < n:
            if proc.poll() is not None or time.monotonic() > deadline + 600:
                raise SystemExit(f"worker stopped at {done:.0f}/{n}; see {workdir / 'worker.log'}")
            time.sleep(0.05)
        t1, cpu1 = time.monotonic(), tree_cpu(ps)
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    return {"wall_s": t1 - t0, "cpu_s": cpu1 - cpu0, "events": done - done0,
            "exit_code": float(proc.returncode)}


def tree_cpu(ps: psutil.Process) -> float:
    """CPU seconds of the worker and its live children (the pool's processes)."""
    total = 0.0
    for proc in [ps, *ps.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += sum(proc.cpu_times()[:2])
    return total


def in_process(messages: list[tuple[bytes, bytes]]) -> float:
    """Messages per CPU-second of EventProcessor.process alone (best of 3)."""
    proc, meta = _processor()
    best = 0.0
    for _ in range(3):
        start = time.process_time()
        for _, value in messages:
            proc.process(value, meta)
        best = max(best, len(messages) / (time.process_time() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--text-bytes", type=int, default=400)
    parser.add_argument("--guarantee", choices=["exactly_once", "at_least_once"],
                        default="exactly_once")
    parser.add_argument("--batch-max", type=int, default=2000)
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker.processes: pool processes of the first stage (1: none)")
    parser.add_argument("--redact-only", action="store_true",
                        help="a worker with the first stage only (worker.stages=[\"ingest\"])")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    bootstrap = load_settings().kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    suffix = uuid.uuid4().hex[:8]
    app_id = f"bench-worker-{suffix}"
    topics = {k: f"bench.worker.{suffix}.{k}" for k in ("ingest", "events", "dlq")}
    for fut in admin.create_topics([NewTopic(t, args.partitions, 1)
                                    for t in topics.values()]).values():
        fut.result()
    try:
        messages, good = build_messages(args.events, args.text_bytes, args.seed)
        size = sum(len(v) for _, v in messages) / len(messages)
        fill(bootstrap, topics["ingest"], messages)
        print(f"{len(messages)} messages ({good} valid events, {len(messages) - good} to dead-letter), "
              f"mean {size:.0f} B, {args.partitions} partitions, {args.guarantee}, "
              f"{'redact stage only' if args.redact_only else 'whole worker'}, "
              f"batch_max {args.batch_max}, processes {args.processes}; "
              f"load average {os.getloadavg()[0]:.1f}")
        workdir = Path(tempfile.mkdtemp(prefix="agentwatch-bench-worker-"))
        res = run_worker(args, bootstrap, topics, app_id, len(messages), workdir)
        events, distinct = count_committed(bootstrap, topics["events"])
        letters, _ = count_committed(bootstrap, topics["dlq"])
        print(json.dumps({
            "events_per_s_wall": round(res["events"] / res["wall_s"]),
            "events_per_cpu_s": round(res["events"] / res["cpu_s"]) if res["cpu_s"] else None,
            "worker_cpu_share": round(res["cpu_s"] / res["wall_s"], 2),
            "wall_s": round(res["wall_s"], 2),
            "events_committed": events, "distinct_event_ids": distinct, "expected_events": good,
            "dead_letters": letters, "expected_dead_letters": len(messages) - good,
            "worker_exit_code": int(res["exit_code"]),
        }, indent=1))
        if res["exit_code"] != 0:
            print(f"the worker exited with {res['exit_code']:.0f}; its log is kept: "
                  f"{workdir / 'worker.log'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if args.in_process:
            print(f"EventProcessor.process alone: {in_process(messages):,.0f} messages per CPU-s")
    finally:
        names = list(topics.values())
        names += [t for t in admin.list_topics(timeout=10).topics
                  if t.startswith((f"{topics['ingest']}.", f"{app_id}-"))]
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort cleanup
                fut.result()


if __name__ == "__main__":
    main()
