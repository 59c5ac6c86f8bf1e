"""`agentwatch worker` as a real subprocess against the real broker.

A stream with ~5% garbage, rule violations, oversized payloads and planted secrets goes into a
fresh ingest topic; every good event must arrive in events exactly once (read_committed, counted
by event_id), every bad message in the DLQ exactly once with its reason, and no secret in either.
The crash test kills the worker with SIGKILL while the stream is flowing and restarts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from pipeline.model import new_event, now_us
from pipeline.serde import AvroSerde

pytestmark = pytest.mark.integration

GITHUB_TOKEN = "ghp_" + "Rk2Wq9Zx4Lm7Bv1Nc8Tp3Ys6Hd0Fg5Jk2Qa"
AWS_KEY = "AKIAZ7YXWVUTSRQPONML"
PASSWORD = "Tr0ub4dor-and-3-horses"
SECRETS = (GITHUB_TOKEN.encode(), AWS_KEY.encode(), PASSWORD.encode())
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stream:
    """What was produced, and what the worker must make of it."""

    good: set[str] = field(default_factory=set)
    """event_ids that must arrive in events exactly once."""
    bad: dict[tuple[int, int], str] = field(default_factory=dict)
    """(partition, offset) of each bad message -> the error kind its dead letter must carry."""
    truncated: set[str] = field(default_factory=set)
    """event_ids whose payload must arrive cut with the marker."""
    _lock: threading.Lock = field(default_factory=threading.Lock)


class StreamProducer:
    """Produces a mixed stream; offsets of bad messages come from delivery reports."""

    def __init__(self, bootstrap: str, topic: str, seed: int) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.serde = AvroSerde()
        self.rng = random.Random(seed)
        self.stream = Stream()
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
            "linger.ms": 5, "enable.idempotence": True, "message.max.bytes": 16 * 1024 * 1024,
            # As the real producers do (ProducerSettings.compression): the worker must read it.
            "compression.type": "lz4",
        })
        self.failures: list[str] = []

    def _report(self, kind: str | None) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                self.failures.append(str(err))
            elif kind is not None:
                with self.stream._lock:
                    self.stream.bad[(msg.partition(), msg.offset())] = kind
        return report

    def produce(self, n: int, *, big_every: int = 97) -> None:
        for _ in range(n):
            self._one(big_every)
            self.producer.poll(0)
        self.producer.flush(30)
        assert not self.failures, self.failures[:3]

    def _one(self, big_every: int) -> None:
        rng = self.rng
        session = f"sess-{rng.randrange(40)}"
        roll = rng.random()
        if roll < 0.05:  # 5% garbage of three kinds
            value, kind = self._garbage(rng)
            self._send(session, value, kind)
            return
        ev = new_event(
            "command.executed", session,
            {"binary": "git", "args": ["push", f"https://bot:{GITHUB_TOKEN}@github.com/o/r.git"],
             "exit_code": rng.choice([0, 0, 1]),
             "stderr_excerpt": f"export AWS_ACCESS_KEY_ID={AWS_KEY}\npassword={PASSWORD}"},
            metadata={"git.branch": "main", "git.commit": "9fceb02"},
            timestamp_us=now_us() - 1_000_000,
        )
        if roll < 0.07:  # a rule violation, secrets included
            ev["event_id"] = f"not-a-uuid-{rng.randrange(10**9)} {GITHUB_TOKEN}"
            self._send(session, self.serde.encode_event(ev), "rule_violation")
            return
        if rng.randrange(big_every) == 0:  # an oversized tool output: cut, not rejected
            ev["payload"][1]["stdout_excerpt"] = (
                "build log line\n" * 140_000 + f"token {GITHUB_TOKEN}\n")
            with self.stream._lock:
                self.stream.truncated.add(ev["event_id"])
        with self.stream._lock:
            self.stream.good.add(ev["event_id"])
        self._send(session, self.serde.encode_event(ev), None)

    def _garbage(self, rng: random.Random) -> tuple[bytes, str]:
        pick = rng.randrange(3)
        if pick == 0:
            return (b"\x07garbage password=" + PASSWORD.encode() + bytes(rng.randrange(256)
                    for _ in range(30)), "bad_magic")
        if pick == 1:
            good = self.serde.encode_event(new_event(
                "file.read", "s", {"path": f"/home/me/.aws/credentials {AWS_KEY}"}))
            return good[: rng.randrange(11, len(good) - 1)], "truncated"
        return b"\xc3\x01" + bytes(rng.randrange(256) for _ in range(8)) + b"body", \
            "unknown_schema"

    def _send(self, session: str, value: bytes, kind: str | None) -> None:
        while True:
            try:
                self.producer.produce(self.topic, key=session.encode(), value=value,
                                      on_delivery=self._report(kind))
                return
            except BufferError:
                self.producer.poll(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """`python -m pipeline.cli worker` with its settings in the environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.port = int(env["AGENTWATCH_WORKER_HTTP__PORT"])
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"], env=self.env, cwd=REPO_ROOT,
            stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.tail()
            if self.health().get("healthy"):
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not healthy in 30 s\n{self.tail()}")

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return dict(json.loads(r.read()))
        except (OSError, ValueError):
            return {}

    def processed(self) -> float:
        return self.metric("agentwatch_worker_messages_total{")

    def metric(self, prefix: str) -> float:
        """Sum of the worker's samples whose line starts with ``prefix`` (0 when unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(prefix))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"worker ignored SIGTERM\n{self.tail()}") from None
        return int(self.proc.returncode)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@dataclass
class Topics:
    ingest: str
    events: str
    dlq: str
    partitions: int


class MakeWorker(Protocol):
    def __call__(self, topics: Topics, **extra: str) -> Worker: ...


@pytest.fixture
def make_worker(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[MakeWorker]:
    workers: list[Worker] = []
    app_id = unique_name("aw_worker")

    def make(topics: Topics, **extra: str) -> Worker:
        env = {
            # The worker's tables are partitioned like its topics: say how many there are.
            "AGENTWATCH_TOPICS__PARTITIONS": str(topics.partitions),
            **os.environ,
            "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "AGENTWATCH_TOPICS__INGEST": topics.ingest,
            "AGENTWATCH_TOPICS__EVENTS": topics.events,
            "AGENTWATCH_TOPICS__DLQ": topics.dlq,
            # Unique names for the aggregate outputs too, so tests never write the shared ones.
            "AGENTWATCH_TOPICS__WIDGETS": f"{topics.events}.widgets",
            "AGENTWATCH_TOPICS__PATTERNS": f"{topics.events}.patterns",
            "AGENTWATCH_WORKER__APP_ID": app_id,
            "AGENTWATCH_WORKER__SESSION_TIMEOUT_S": "6",
            "AGENTWATCH_WORKER__HEARTBEAT_INTERVAL_S": "1",
            "AGENTWATCH_WORKER__MAX_FIELD_BYTES": "8192",
            "AGENTWATCH_WORKER_HTTP__PORT": str(_free_port()),
            "AGENTWATCH_STACK__DIR": str(tmp_path / "stack"),
            "AGENTWATCH_LOG_FORMAT": "text",
            **extra,
        }
        worker = Worker(env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(10)
    _delete_topics_made_by_workers(kafka_bootstrap, app_id, [w.env["AGENTWATCH_TOPICS__WIDGETS"]
                                                             for w in workers])


def _delete_topics_made_by_workers(bootstrap: str, app_id: str, widgets: list[str]) -> None:
    """Changelogs ({app id}-...) and aggregate outputs the worker created for this test."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    prefixes = (app_id, *{w.rsplit(".widgets", 1)[0] + "." for w in widgets})
    doomed = [t for t in admin.list_topics(timeout=10).topics
              if t.startswith(prefixes) and not t.endswith((".ingest", ".events", ".dlq"))]
    if doomed:
        for fut in admin.delete_topics(doomed, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()


@pytest.fixture
def topics(kafka_topic: Callable[..., str], request: pytest.FixtureRequest) -> Topics:
    partitions = getattr(request, "param", 1)
    return Topics(
        ingest=kafka_topic("ingest", partitions),
        events=kafka_topic("events", partitions),
        dlq=kafka_topic("dlq", partitions),
        partitions=partitions,
    )


def read_committed(bootstrap: str, topic: str) -> list[Any]:
    """Every committed message of ``topic`` (aborted transactions are invisible)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Any] = []
        idle = 0
        deadline = time.monotonic() + 30
        while idle < 2 and time.monotonic() < deadline:
            batch = consumer.consume(5000, 0.5)
            idle = 0 if batch else idle + 1
            out.extend(m for m in batch if not m.error())
        return out
    finally:
        consumer.close()


def wait_for(bootstrap: str, topics: Topics, stream: Stream, timeout: float) -> str:
    """Until events and dlq hold as many messages as expected (or the timeout).

    Returns what was there at the end, per partition, for the failure message of ``check``:
    a stall and a duplication look alike in the final counts but not in this.
    """
    deadline = time.monotonic() + timeout
    events: list[Any] = []
    while time.monotonic() < deadline:
        events = read_committed(bootstrap, topics.events)
        letters = read_committed(bootstrap, topics.dlq)
        if len(events) >= len(stream.good) and len(letters) >= len(stream.bad):
            return f"complete after {timeout - (deadline - time.monotonic()):.0f}s"
        time.sleep(1.0)
    return f"timed out after {timeout:.0f}s with events per partition {_per_partition(events)}"


def _per_partition(messages: list[Any]) -> dict[int, int]:
    return dict(sorted(Counter(m.partition() for m in messages).items()))


def _duplicates(messages: list[Any], serde: AvroSerde) -> str:
    """Where the copies sit: per events partition, the offsets of first and second copies."""
    first: dict[str, tuple[int, int]] = {}
    spans: dict[int, list[tuple[int, int]]] = {}
    for m in messages:
        event_id = serde.decode_event(m.value())["event_id"]
        if event_id in first:
            spans.setdefault(m.partition(), []).append((first[event_id][1], m.offset()))
        else:
            first[event_id] = (m.partition(), m.offset())
    return "; ".join(
        f"partition {p}: {len(pairs)} copies, originals at offsets "
        f"{min(a for a, _ in pairs)}-{max(a for a, _ in pairs)}, copies at "
        f"{min(b for _, b in pairs)}-{max(b for _, b in pairs)}"
        for p, pairs in sorted(spans.items()))


def final(bootstrap: str, topics: Topics) -> tuple[list[Any], list[Any]]:
    return read_committed(bootstrap, topics.events), read_committed(bootstrap, topics.dlq)


def check(events: list[Any], letters: list[Any], stream: Stream, ingest: str,
          progress: str = "") -> None:
    serde = AvroSerde()
    ids = Counter(serde.decode_event(m.value())["event_id"] for m in events)
    dupes = {i: n for i, n in ids.items() if n > 1}
    assert not dupes, (f"{len(dupes)} events duplicated ({_duplicates(events, serde)}); "
                       f"events per partition {_per_partition(events)}; wait: {progress}")
    assert set(ids) == stream.good, (
        f"missing {len(stream.good - set(ids))}, unexpected {len(set(ids) - stream.good)}")
    assert len(events) == len(stream.good)

    seen: Counter[tuple[int, int]] = Counter()
    for m in letters:
        name, letter = serde.decode(m.value())
        assert name == "dev.agentwatch.DeadLetter"
        where = (letter["source_partition"], letter["source_offset"])
        seen[where] += 1
        assert letter["source_topic"] == ingest
        assert letter["error_kind"] == stream.bad.get(where), (where, letter["error_message"])
        assert letter["error_message"] and letter["stage"] == "processor.validate"
    assert not [w for w, n in seen.items() if n > 1], "dead letters duplicated"
    assert set(seen) == set(stream.bad)

    for m in (*events, *letters):
        for secret in SECRETS:
            assert secret not in m.value()
            assert secret not in (m.key() or b"")

    truncated = 0
    for m in events:
        ev = serde.decode_event(m.value())
        assert ev["metadata"]["git.branch"] == "main"  # git metadata kept
        assert m.key() == ev["session_id"].encode()
        if ev["event_id"] in stream.truncated:
            truncated += 1
            out = ev["payload"][1]["stdout_excerpt"]
            assert "…[truncated by agentwatch:" in out and len(out.encode()) < 8192 + 100
    assert truncated == len(stream.truncated)


@pytest.mark.parametrize("topics", [1, 12], indirect=True, ids=["1-partition", "12-partitions"])
def test_stream_with_garbage_secrets_and_oversized_payloads(
    topics: Topics, make_worker: MakeWorker, kafka_bootstrap: str
) -> None:
    producer = StreamProducer(kafka_bootstrap, topics.ingest, seed=11)
    producer.produce(1500, big_every=150)
    assert len(producer.stream.bad) > 50 and producer.stream.truncated
    worker = make_worker(topics)
    worker.start()
    progress = wait_for(kafka_bootstrap, topics, producer.stream, timeout=60)
    assert worker.terminate() == 0, worker.tail()
    check(*final(kafka_bootstrap, topics), producer.stream, topics.ingest, progress)


POOL = {"AGENTWATCH_WORKER__PROCESSES": "2", "AGENTWATCH_WORKER__BATCH_MAX": "100"}
"""A first stage with a pool of two processes and batches small enough to fill: a full batch's
transaction waits while the next batch is processed (processors/ingest_loop.py)."""


@pytest.mark.parametrize("topics", [4], indirect=True, ids=["4-partitions"])
@pytest.mark.parametrize("extra", [{}, POOL], ids=["inline", "pool"])
def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    topics: Topics, make_worker: MakeWorker, kafka_bootstrap: str, extra: dict[str, str]
) -> None:
    producer = StreamProducer(kafka_bootstrap, topics.ingest, seed=23)
    producer.produce(600, big_every=200)
    worker = make_worker(topics, **extra)
    worker.start()
    # Keep the stream flowing while the worker dies, so the kill lands with batches in flight.
    feeder = threading.Thread(target=producer.produce, args=(2400,), kwargs={"big_every": 300})
    feeder.start()
    deadline = time.monotonic() + 30
    while worker.processed() < 800 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.processed() >= 800, worker.tail()
    worker.kill()
    before_restart = len(read_committed(kafka_bootstrap, topics.events))
    feeder.join(60)
    assert before_restart < len(producer.stream.good), "the kill came after the end of the stream"

    again = make_worker(topics, **extra)
    again.start()
    progress = wait_for(kafka_bootstrap, topics, producer.stream, timeout=60)
    if extra:
        # The restart works off a backlog in full batches: commits waited on the pool's work.
        assert again.metric("agentwatch_worker_batches_held_total ") > 0, again.tail()
    assert again.terminate() == 0, again.tail()
    check(*final(kafka_bootstrap, topics), producer.stream, topics.ingest, progress)


@pytest.mark.parametrize("topics", [6], indirect=True, ids=["6-partitions"])
@pytest.mark.parametrize("extra", [{}, POOL], ids=["inline", "pool"])
def test_two_workers_share_the_partitions_of_one_group(
    topics: Topics, make_worker: MakeWorker, kafka_bootstrap: str, extra: dict[str, str]
) -> None:
    first, second = make_worker(topics, **extra), make_worker(topics, **extra)
    first.start()
    second.start()
    producer = StreamProducer(kafka_bootstrap, topics.ingest, seed=5)
    producer.produce(1200, big_every=400)
    progress = wait_for(kafka_bootstrap, topics, producer.stream, timeout=60)
    shares = [first.health().get("assigned_partitions"), second.health().get("assigned_partitions")]
    assert first.terminate() == 0 and second.terminate() == 0
    check(*final(kafka_bootstrap, topics), producer.stream, topics.ingest, progress)
    assert sorted(shares) == [3, 3], shares


def _summaries(bootstrap: str, topic: str) -> dict[str, int]:
    """Session -> the most events any of its session_summary updates counts."""
    serde = AvroSerde()
    out: dict[str, int] = {}
    for msg in read_committed(bootstrap, topic):
        if not (msg.key() or b"").endswith(b"/session_summary"):
            continue
        _name, update = serde.decode(msg.value())
        counted = json.loads(update["data_json"])["events"]
        out[update["session_id"]] = max(out.get(update["session_id"], 0), counted)
    return out


@pytest.mark.parametrize("topics", [3], indirect=True, ids=["3-partitions"])
def test_the_stages_run_as_separate_workers(
    topics: Topics, make_worker: MakeWorker, kafka_bootstrap: str
) -> None:
    """worker.stages: one worker validates and redacts, another folds the widgets; each reports
    its own input partitions, and together they do what one whole worker does."""
    first = make_worker(topics, AGENTWATCH_WORKER__STAGES='["ingest"]')
    aggregates = make_worker(topics, AGENTWATCH_WORKER__STAGES='["aggregates"]')
    first.start()
    aggregates.start()
    producer = StreamProducer(kafka_bootstrap, topics.ingest, seed=31)
    producer.produce(600, big_every=200)
    progress = wait_for(kafka_bootstrap, topics, producer.stream, timeout=60)
    events, letters = final(kafka_bootstrap, topics)
    serde = AvroSerde()
    per_session = Counter(serde.decode(m.value())[1]["session_id"] for m in events)
    widgets = first.env["AGENTWATCH_TOPICS__WIDGETS"]
    deadline = time.monotonic() + 30
    while (summaries := _summaries(kafka_bootstrap, widgets)) != per_session:
        assert time.monotonic() < deadline, (summaries, per_session)
        time.sleep(0.5)
    health = first.health(), aggregates.health()
    folded_by_first = first.metric("agentwatch_widget_events_total ")
    ingested_by_aggregates = aggregates.processed()
    assert first.terminate() == 0 and aggregates.terminate() == 0
    check(events, letters, producer.stream, topics.ingest, progress)
    assert [h.get("assigned_partitions") for h in health] == [3, 3], health
    assert folded_by_first == 0 and ingested_by_aggregates == 0
