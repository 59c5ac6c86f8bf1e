"""ClickHouse sink figures: sustained rows/s from Kafka into ClickHouse, and where the time goes.

    .venv/bin/python bench/clickhouse_sink.py [--events 200000] [--partitions 6]
        [--processes 1,2] [--batches 5000,20000,50000] [--sessions 500]

1. write path without Kafka, one process: Avro bytes -> decode -> row mapping -> sessions fold
   -> columnar INSERT (the same ClickHouseSink the component uses), per stage;
2. end to end: the events are produced once to a fresh topic, then for each (processes, batch
   size) the real component (`agentwatch sink clickhouse`, N processes in one consumer group)
   loads them into a fresh database. Rows/s is counted from the first row visible in ClickHouse
   to the last (startup and group join excluded), polling count() every 50 ms. CPU time per row
   of the sink processes and (with --private) of the broker and the ClickHouse server is
   measured over the same window: on a shared machine the wall-clock rate mostly reflects the
   other tenants, the CPU cost per row does not, and cores / CPU-per-row is the rate the
   machine would sustain if its CPUs were the pipeline's alone.
Needs the local stack (`agentwatch up --services-only`), or `--private`: a Kafka broker and a
ClickHouse server of the benchmark's own on free ports (the Kafka jars of the local stack are
reused), so other users of the shared stack neither disturb nor are disturbed by the run.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
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
from pipeline.settings import ClickHouseSettings, Settings, StackSettings, load_settings  # noqa: E402
from pipeline.sinks import Batch, Record, TopicPartition  # noqa: E402
from pipeline.stack.clickhouse import ClickHouseStack  # noqa: E402
from pipeline.stack.kafka import KafkaStack  # noqa: E402
from pipeline.testing import synthetic_events  # noqa: E402


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stages(settings: Settings, raw: list[bytes], batch: int) -> dict[str, float]:
    """µs per row of each stage, and rows/s of the whole write path, in this process."""
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


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of these processes and their children so far."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for p in (proc, *proc.children(recursive=True)):
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    total += t.user + t.system
    return total


def end_to_end(settings: Settings, topic: str, n: int, processes: int, batch: int,
               service_pids: dict[str, int]) -> dict[str, float]:
    """Wall-clock rows/s, and CPU µs per row of the sink processes and of the services
    (Kafka broker + ClickHouse server; only when they are the benchmark's own)."""
    db = f"bench_chsink_{uuid.uuid4().hex[:8]}"
    apply_migrations(settings.clickhouse, db)
    env = {**os.environ,
           "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "AGENTWATCH_TOPICS__EVENTS": topic,
           "AGENTWATCH_CLICKHOUSE__DATABASE": db,
           "AGENTWATCH_CLICKHOUSE__PORT": str(settings.clickhouse.port),
           "AGENTWATCH_CLICKHOUSE__HTTP_PORT": str(settings.clickhouse.http_port),
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
        sink_pids = [p.pid for p in procs]
        first_at = last_at = None
        first_count = 0
        cpu0: dict[str, float] = {}

        def cpu_now() -> dict[str, float]:
            return {"sink": cpu_seconds(sink_pids),
                    **{name: cpu_seconds([pid]) for name, pid in service_pids.items()}}

        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            count = conn.execute(f"SELECT count() FROM {db}.telemetry_events")[0][0]
            now = time.monotonic()
            if count and first_at is None:
                first_at, first_count = now, count
                cpu0 = cpu_now()
            if count >= n:
                last_at = now
                break
            time.sleep(0.05)
        if first_at is None or last_at is None or last_at == first_at:
            raise RuntimeError("the sink did not load the topic in time")
        rows = n - first_count
        cpu1 = cpu_now()
        out = {f"{name}_cpu_us": (cpu1[name] - cpu0[name]) * 1e6 / rows for name in cpu1}
        out["rows_s"] = rows / (last_at - first_at)
        return out
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.disconnect()


@contextlib.contextmanager
def private_stack() -> Iterator[tuple[Settings, dict[str, int]]]:
    """A broker and a ClickHouse server on free ports in a temp dir, stopped at the end."""
    shared = load_settings()
    with tempfile.TemporaryDirectory(prefix="bench-chsink-") as tmp:
        stack = StackSettings(dir=Path(tmp), cluster_ports=(free_port(), free_port(), free_port()),
                              kafka_controller_port=free_port())
        kafka = KafkaStack(stack)
        kafka.root.mkdir(parents=True)
        (kafka.root / kafka.libs.name).symlink_to(KafkaStack(shared.stack).libs)
        ch = ClickHouseStack(stack, ClickHouseSettings(port=free_port(), http_port=free_port()))
        try:
            kafka.start()
            ch.start()
            kafka.wait_ready(120)
            ch.wait_ready(60)
            ch_pid, kafka_pid = ch.process.pid(), kafka.process(kafka.nodes()[0]).pid()
            assert ch_pid is not None and kafka_pid is not None
            pids = {"clickhouse": ch_pid, "kafka": kafka_pid}
            yield (load_settings(kafka={"bootstrap_servers": kafka.bootstrap_servers()},
                                 clickhouse=ch.ch), pids)
        finally:
            ch.stop()
            kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--batches", default="5000,20000,50000")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument("--private", action="store_true",
                        help="run on a Kafka and a ClickHouse of the benchmark's own")
    args = parser.parse_args()
    shared: tuple[Settings, dict[str, int]] = (load_settings(), {})
    with private_stack() if args.private else contextlib.nullcontext(shared) as (settings, pids):
        run(args, settings, pids)


def run(args: argparse.Namespace, settings: Settings, service_pids: dict[str, int]) -> None:
    serde = AvroSerde()
    events = synthetic_events(args.events, sessions=args.sessions, seed=1)
    raw = [serde.encode_event(e) for e in events]
    keys = [e["session_id"].encode() for e in events]
    print(f"# {args.events} events, {args.sessions} sessions, {os.cpu_count()} cores, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    if not args.skip_stages:
        sample = raw[: min(len(raw), 50_000)]
        st = stages(settings, sample, 20_000)
        print(f"write path, one process, {len(sample)} rows: decode {st['decode_us']:.1f} µs, "
              f"map {st['map_us']:.1f} µs, sessions fold {st['fold_us']:.1f} µs, "
              f"columnar insert {st['insert_us']:.1f} µs per row; whole write path "
              f"{st['write_path_rows_s']:,.0f} rows/s")
    topic = f"bench.chsink.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions,
                                  replication_factor=1)])[topic].result()
    try:
        started = time.perf_counter()
        produce(settings.kafka.bootstrap_servers, topic, raw, keys)
        print(f"produced in {time.perf_counter() - started:.1f} s")
        cores = os.cpu_count() or 1
        print("\n| processes | batch_max_records | rows/s (wall clock) | load avg | CPU µs/row: sink "
              "| ClickHouse | Kafka | rows/s if the CPUs were ours |")
        print("|---|---|---|---|---|---|---|---|")
        for processes in (int(p) for p in args.processes.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                r = end_to_end(settings, topic, args.events, processes, batch, service_pids)
                total = sum(v for k, v in r.items() if k.endswith("_cpu_us"))
                own = service_pids and f"{cores * 1e6 / total:,.0f}"
                print(f"| {processes} | {batch} | {r['rows_s']:,.0f} | {os.getloadavg()[0]:.1f} "
                      f"| {r['sink_cpu_us']:.1f} | {r.get('clickhouse_cpu_us', float('nan')):.1f} "
                      f"| {r.get('kafka_cpu_us', float('nan')):.1f} "
                      f"| {own or 'n/a (shared stack)'} |", flush=True)
    finally:
        admin.delete_topics([topic])


if __name__ == "__main__":
    main()
