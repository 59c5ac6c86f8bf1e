"""Archive sink and replay figures: events/s archived, replay start latency, replay rate.

    .venv/bin/python bench/archive.py [--events 200000] [--sessions 40] [--no-s3] [--no-kafka]

1. sink path without Kafka: Avro bytes -> decode -> ArchiveSink.write (JSON lines, gzip, one
   segment per session, compaction of every session in its last batch) into a folder and into
   the local stack's S3 endpoint (moto over HTTP);
2. end to end: the same events produced to a fresh topic, then the real component
   (`consumers.archive.sink.serve`) drains it into a folder;
3. replay: time from "replay SESSION" to the first event emitted (load recording + parse), and
   the speed-0 rate onto the Kafka replay channel.
Needs Kafka from the local stack for 2 and 3 (`agentwatch up --services-only`); S3 figures use
a moto server the bench starts and stops itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from consumers.archive.archiver import ArchiveMetrics, ArchiveSink  # noqa: E402
from consumers.archive.recordings import open_session  # noqa: E402
from consumers.archive.replay import replay  # noqa: E402
from consumers.archive.s3_target import S3Target, s3_client  # noqa: E402
from consumers.archive.targets import ArchiveTarget, FileTarget  # noqa: E402
from consumers.archive.testing import free_port, sample_session, wait_for  # noqa: E402
from pipeline.serde import AvroSerde  # noqa: E402
from pipeline.settings import S3Settings, load_settings  # noqa: E402
from pipeline.sinks import Batch, Record, TopicPartition  # noqa: E402

SERDE = AvroSerde()
BATCH = 20_000


def make_stream(events: int, sessions: int) -> list[dict[str, Any]]:
    per = max(2, events // sessions)
    run = uuid.uuid4().hex[:6]
    all_sessions = [sample_session(f"bench-{run}-{i}", per, span_s=3600.0) for i in range(sessions)]
    return sorted((e for s in all_sessions for e in s), key=lambda e: e["timestamp"])


def sink_path(target: ArchiveTarget, raw: list[bytes], partitions: int = 6) -> tuple[float, float]:
    """(events/s wall clock, events per CPU-second of this process) of decode +
    ArchiveSink.write over batches like the consume loop hands over."""
    sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()), concurrency=8)

    def reject(record: Record[Any], exc: Exception) -> None:
        raise AssertionError(exc)

    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(raw), BATCH):
        parts: dict[TopicPartition, list[Record[dict[str, Any]]]] = {}
        for offset, data in enumerate(raw[start:start + BATCH], start=start):
            event = SERDE.decode_event(data)
            p = hash(event["session_id"]) % partitions
            parts.setdefault(TopicPartition("events", p), []).append(
                Record("events", p, offset, None, event, 0, data))
        sink.write(Batch(parts), reject)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    sink.close()
    return len(raw) / elapsed, len(raw) / cpu


@contextlib.contextmanager
def private_s3() -> Iterator[str]:
    """A moto server of our own (its own process, on a free port): the bench neither depends on
    nor loads the local stack's S3 endpoint."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for("moto", lambda: _answers(endpoint + "/moto-api/"), timeout_s=60)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def s3_target(endpoint: str) -> S3Target:
    client = s3_client(S3Settings(endpoint_url=endpoint))
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    return S3Target(client, bucket, "archive")


def end_to_end(raw: list[bytes], keys: list[bytes], tmp: Path) -> tuple[float, float, float]:
    """(events/s from the first write to the last commit, events per CPU-second of the sink,
    seconds from start to all committed)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from consumers.archive.sink import serve

    base = load_settings()
    admin = AdminClient(base.kafka.client_config())
    topic = f"bench.archive.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result()
    try:
        producer = Producer({**base.kafka.client_config(), "linger.ms": 20,
                             "compression.type": "lz4"})
        for key, value in zip(keys, raw, strict=True):
            while True:
                try:
                    producer.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        port = free_port()
        settings = base.model_copy(update={
            "topics": base.topics.model_copy(update={"events": topic}),
            "archive": base.archive.model_copy(update={
                "target": (tmp / "e2e").as_uri(), "consumer_group": f"bench-{topic}",
                "segment_max_age_s": 1.0}),
            "archive_sink_http": base.archive_sink_http.model_copy(update={"port": port}),
        })
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(target=loop.run_until_complete, args=(serve(settings, stop),))
        started, cpu = time.perf_counter(), time.process_time()
        thread.start()
        first = last = None
        while last is None:
            time.sleep(0.1)
            written = _metric(port, "agentwatch_sink_records_written_total")
            if written and first is None:
                first = time.perf_counter()
            if written >= len(raw):
                last = time.perf_counter()
            if time.perf_counter() - started > 600:
                raise RuntimeError("the sink did not drain the topic in 10 minutes")
        cpu = time.process_time() - cpu
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        assert first is not None
        # The first observed write already holds up to one batch: count from its start.
        return len(raw) / max(last - first + 0.1, 1e-9), len(raw) / cpu, last - started
    finally:
        admin.delete_topics([topic])


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


class _StartedError(Exception):
    pass


def replay_start(target: ArchiveTarget, sizes: list[int]) -> list[tuple[int, float, float]]:
    """(events, median seconds to the first emitted event, compressed MiB) per session size."""
    out = []
    for size in sizes:
        sid = f"replay-{uuid.uuid4().hex[:8]}"
        sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()))
        events = sample_session(sid, size, span_s=7200.0)
        tp = TopicPartition("events", 0)
        sink.write(Batch({tp: [Record("events", 0, i, None, e, 0, b"")
                               for i, e in enumerate(events)]}), lambda r, e: None)
        sink.close()
        samples = []
        for _ in range(5):
            first: list[float] = []

            async def emit(event: dict[str, Any], first: list[float] = first) -> None:
                if not first:
                    first.append(time.perf_counter())
                    raise _StartedError  # only the start is measured here

            t0 = time.perf_counter()
            with contextlib.suppress(_StartedError):
                asyncio.run(replay(open_session(target, sid), emit, speed=1.0))
            samples.append(first[0] - t0)
        from consumers.archive.manifest import read_manifest

        manifest = read_manifest(target, sid)
        size_mib = (manifest.compressed_bytes if manifest else 0) / 2**20
        out.append((size, statistics.median(samples), size_mib))
    return out


def replay_rate(target: ArchiveTarget, size: int) -> float:
    """Speed-0 replay of one recording onto the Kafka replay channel, events/s (incl. flush)."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from consumers.archive.channel import KafkaReplayChannel

    settings = load_settings()
    admin = AdminClient(settings.kafka.client_config())
    topic = f"bench.replay.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result()
    try:
        sid = f"rate-{uuid.uuid4().hex[:8]}"
        sink = ArchiveSink(target, ArchiveMetrics(CollectorRegistry()))
        events = sample_session(sid, size)
        sink.write(Batch({TopicPartition("events", 0): [
            Record("events", 0, i, None, e, 0, b"") for i, e in enumerate(events)]}),
            lambda r, e: None)
        sink.close()
        channel = KafkaReplayChannel(settings.kafka, topic, SERDE)

        async def go() -> None:
            await replay(open_session(target, sid), channel.emit, speed=0)
            await channel.close()

        t0 = time.perf_counter()
        asyncio.run(go())
        return size / (time.perf_counter() - t0)
    finally:
        admin.delete_topics([topic])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--no-kafka", action="store_true")
    args = parser.parse_args()
    from consumers.archive.sink import tune_gc

    tune_gc()  # as `agentwatch sink archive` does at start
    stream = make_stream(args.events, args.sessions)
    raw = [SERDE.encode_event(e) for e in stream]
    keys = [e["session_id"].encode() for e in stream]
    mean_line = sum(len(r) for r in raw) / len(raw)
    print(f"{len(raw)} events in {args.sessions} sessions (mean Avro message {mean_line:.0f} B);"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir)
        endpoint = None if args.no_s3 else stack.enter_context(private_s3())
        rate, per_cpu = sink_path(FileTarget(tmp / "a"), raw)
        print(f"sink path, folder:          {rate:>9,.0f} events/s  ({per_cpu:,.0f} per CPU-second)")
        if endpoint:
            rate, per_cpu = sink_path(s3_target(endpoint), raw)
            print(f"sink path, S3 (moto HTTP):  {rate:>9,.0f} events/s  ({per_cpu:,.0f} per CPU-second)")
        if not args.no_kafka:
            rate, per_cpu, total = end_to_end(raw, keys, tmp)
            print(f"end to end via Kafka, folder: {rate:>7,.0f} events/s  ({per_cpu:,.0f} per CPU-second"
                  f" of the sink; all {len(raw):,} committed {total:.1f} s after start, group join"
                  " included)")
        targets: list[tuple[str, ArchiveTarget]] = [("folder", FileTarget(tmp / "r"))]
        if endpoint:
            targets.append(("S3", s3_target(endpoint)))
        for name, target in targets:
            for size, latency, mib in replay_start(target, [1_000, 10_000, 50_000]):
                print(f"replay start, {name}, {size:>6,} events ({mib:.2f} MiB): "
                      f"{latency * 1000:>7.1f} ms")
        if not args.no_kafka:
            rate = replay_rate(FileTarget(tmp / "q"), 50_000)
            print(f"replay speed 0 onto Kafka: {rate:>9,.0f} events/s (50,000 events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
