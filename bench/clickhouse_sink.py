"""ClickHouse sink figures: sustained rows/s from Kafka into ClickHouse, and where the time goes.

    .venv/bin/python bench/clickhouse_sink.py [--events 200000] [--partitions 6]
        [--processes 1,2] [--batches 5000,20000,50000] [--sessions 500]

1. write path without Kafka, one process: Avro bytes -> decode -> row mapping -> sessions fold
   -> columnar INSERT (the same ClickHouseSink the component uses), per stage;
2. end to end: the events are produced once to a fresh topic, then for each (processes, batch
   size) the real component (`agentwatch sink clickhouse`, N processes in one consumer group)
   loads them into a fresh database. Rows/s is counted from the first row visible in ClickHouse
   to the last (startup and group join excluded), polling count() every 50 ms.
Needs the local stack (`agentwatch up --services-only`). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from consumers.clickhouse.rows import event_row  # noqa: E402
from consumers.clickhouse.sessions import SessionFolder, fold_session  # noqa: E402
from consumers.clickhouse.writer import EVENTS, ClickHouseSink, ClickHouseSinkMetrics  # noqa: E402
from pipeline.migrations import apply_migrations, client  # noqa: E402
from pipeline.serde import AvroSerde  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.sinks import Batch, Record, TopicPartition  # noqa: E402
from pipeline.testing import synthetic_events  # noqa: E402


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stages(raw: list[bytes], batch: int) -> dict[str, float]:
    """µs per row of each stage, and rows/s of the whole write path, in this process."""
    settings = load_settings()
    serde = AvroSerde()
    db = f"bench_chsink_{uuid.uuid4().hex[:8]}"
    apply_migrations(settings.clickhouse, db)
    n = len(raw)
    decoded: list[dict[str, Any]] = []
    t_decode = timed(lambda: decoded.extend(serde.decode_event(b) for b in raw))
    rows: list[Any] = []
    t_map = timed(lambda: rows.extend(event_row(e, "t", 0, i) for i, e in enumerate(decoded)))

    def fold() -> None:
        grouped: dict[str, list[Any]] = {}
        for i, e in enumerate(decoded):
            grouped.setdefault(e["session_id"], []).append((e, "t", 0, i))
        for sid, located in grouped.items():
            fold_session(None, sid, located)

    t_fold = timed(fold)
    conn = client(settings.clickhouse, db)
    sql = f"INSERT INTO {db}.telemetry_events ({', '.join(EVENTS.columns)}) VALUES"

    def insert() -> None:
        for lo in range(0, n, batch):
            conn.execute(sql, list(zip(*rows[lo:lo + batch], strict=True)),
                         columnar=True)

    t_insert = timed(insert)
    conn.execute(f"DROP DATABASE {db}")
    apply_migrations(settings.clickhouse, db)
    sink = ClickHouseSink(lambda: client(settings.clickhouse, db), db, EVENTS,
                          ClickHouseSinkMetrics(CollectorRegistry()), sessions=SessionFolder(db))

    def whole() -> None:
        for lo in range(0, n, batch):
            recs = [Record("t", 0, lo + i, None, serde.decode_event(b), 0, b)
                    for i, b in enumerate(raw[lo:lo + batch])]
            sink.write(Batch({TopicPartition("t", 0): recs}), lambda r, e: None)

    t_whole = timed(whole)
    count = conn.execute(f"SELECT count() FROM {db}.telemetry_events")[0][0]
    assert count == n, count
    conn.execute(f"DROP DATABASE {db}")
    conn.disconnect()
    us = 1e6 / n
    return {"decode_us": t_decode * us, "map_us": t_map * us, "fold_us": t_fold * us,
            "insert_us": t_insert * us, "write_path_rows_s": n / t_whole}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def produce(bootstrap: str, topic: str, raw: list[bytes], keys: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "batch.num.messages": 10_000, "compression.type": "lz4"})
    for value, key in zip(raw, keys, strict=True):
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


def end_to_end(topic: str, n: int, processes: int, batch: int) -> float:
    settings = load_settings()
    db = f"bench_chsink_{uuid.uuid4().hex[:8]}"
    apply_migrations(settings.clickhouse, db)
    env = {**os.environ,
           "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "AGENTWATCH_TOPICS__EVENTS": topic,
           "AGENTWATCH_CLICKHOUSE__DATABASE": db,
           "AGENTWATCH_CLICKHOUSE_SINK__GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}",
           "AGENTWATCH_CLICKHOUSE_SINK__BATCH_MAX_RECORDS": str(batch),
           "AGENTWATCH_CLICKHOUSE_SINK__LOAD_PATTERNS": "false",
           "AGENTWATCH_CLICKHOUSE_SINK__LOAD_DEAD_LETTERS": "false",
           "AGENTWATCH_LOG_LEVEL": "WARNING"}
    procs = []
    conn = client(settings.clickhouse, db)
    try:
        for _ in range(processes):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "sink", "clickhouse"], cwd=REPO,
                env={**env, "AGENTWATCH_CLICKHOUSE_SINK_HTTP__PORT": str(free_port())},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        first_at = last_at = None
        first_count = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            count = conn.execute(f"SELECT count() FROM {db}.telemetry_events")[0][0]
            now = time.monotonic()
            if count and first_at is None:
                first_at, first_count = now, count
            if count >= n:
                last_at = now
                break
            time.sleep(0.05)
        if first_at is None or last_at is None or last_at == first_at:
            raise RuntimeError("the sink did not load the topic in time")
        return (n - first_count) / (last_at - first_at)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--batches", default="5000,20000,50000")
    parser.add_argument("--skip-stages", action="store_true")
    args = parser.parse_args()
    serde = AvroSerde()
    events = synthetic_events(args.events, sessions=args.sessions, seed=1)
    raw = [serde.encode_event(e) for e in events]
    keys = [e["session_id"].encode() for e in events]
    print(f"# {args.events} events, {args.sessions} sessions, {os.cpu_count()} cores, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    if not args.skip_stages:
        sample = raw[: min(len(raw), 50_000)]
        st = stages(sample, 20_000)
        print(f"write path, one process, {len(sample)} rows: decode {st['decode_us']:.1f} µs, "
              f"map {st['map_us']:.1f} µs, sessions fold {st['fold_us']:.1f} µs, "
              f"columnar insert {st['insert_us']:.1f} µs per row; whole write path "
              f"{st['write_path_rows_s']:,.0f} rows/s")
    settings = load_settings()
    topic = f"bench.chsink.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions,
                                  replication_factor=1)])[topic].result()
    try:
        started = time.perf_counter()
        produce(settings.kafka.bootstrap_servers, topic, raw, keys)
        print(f"produced in {time.perf_counter() - started:.1f} s")
        print("\n| processes | batch_max_records | rows/s (sustained) | load avg |")
        print("|---|---|---|---|")
        for processes in (int(p) for p in args.processes.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                rate = end_to_end(topic, args.events, processes, batch)
                print(f"| {processes} | {batch} | {rate:,.0f} | {os.getloadavg()[0]:.1f} |",
                      flush=True)
    finally:
        admin.delete_topics([topic])


if __name__ == "__main__":
    main()
