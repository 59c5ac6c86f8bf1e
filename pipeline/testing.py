"""In-memory doubles of pipeline contracts, for unit tests of the code that uses them.

* ``InMemorySink``: a ``pipeline.sinks.Sink`` that stores batches and can be told to fail,
  push back, or reject chosen records.
* ``InMemoryDeadLetters``: a ``DeadLetterSink`` that keeps letters (durable once flushed).
* ``FakeConsumer`` / ``FakeMessage``: the slice of ``confluent_kafka.Consumer`` the batching loop
  uses, over in-memory partitions, with rebalances and committed offsets you can inspect.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import BackpressureError, ItemError, TransientError
from pipeline.sinks import Batch, Record, RejectFn, TopicPartition

# -- sink ---------------------------------------------------------------------------------------


class InMemorySink:
    """Stores every record it accepts (``written``) and every batch it saw (``batches``).

    ``fail_next`` raises queued exceptions on the next writes (one per write);
    ``reject_if(record)`` returns an ``ItemError`` for records to refuse.
    """

    def __init__(self, reject_if: Callable[[Record[Any]], ItemError | None] | None = None) -> None:
        self.written: list[Record[Any]] = []
        self.batches: list[Batch[Any]] = []
        self.revoked: list[TopicPartition] = []
        self.fail_next: deque[BaseException] = deque()
        self.reject_if = reject_if
        self.closed = False

    def fail(self, *errors: BaseException) -> None:
        self.fail_next.extend(errors)

    def fail_transient(self, times: int = 1) -> None:
        self.fail(*(TransientError("backend down") for _ in range(times)))

    def push_back(self, retry_after: float) -> None:
        self.fail(BackpressureError("backend busy", retry_after=retry_after))

    def write(self, batch: Batch[Any], reject: RejectFn) -> None:
        self.batches.append(batch)
        if self.fail_next:
            raise self.fail_next.popleft()
        for record in batch.records():
            err = self.reject_if(record) if self.reject_if is not None else None
            if err is not None:
                reject(record, err)
            else:
                self.written.append(record)

    def revoke(self, partitions: Sequence[TopicPartition]) -> None:
        self.revoked.extend(partitions)

    def close(self) -> None:
        self.closed = True

    def values(self) -> list[Any]:
        return [r.value for r in self.written]


class InMemoryDeadLetters:
    """``published`` are buffered letters; ``durable`` those a successful ``flush`` confirmed."""

    def __init__(self) -> None:
        self.published: list[tuple[dict[str, object], bytes | None]] = []
        self.durable: list[tuple[dict[str, object], bytes | None]] = []
        self.fail_flushes = 0

    def publish(self, letter: Mapping[str, object], key: bytes | None) -> None:
        self.published.append((dict(letter), key))

    def flush(self, timeout_s: float) -> None:
        if self.fail_flushes > 0:
            self.fail_flushes -= 1
            raise TransientError("dlq unavailable")
        self.durable.extend(self.published)
        self.published.clear()


# -- Kafka consumer ----------------------------------------------------------------------------


@dataclass
class FakeError:
    """Stands in for ``confluent_kafka.KafkaError`` in a message."""

    code_: int
    fatal_: bool = False
    text: str = "fake error"

    def code(self) -> int:
        return self.code_

    def fatal(self) -> bool:
        return self.fatal_

    def __str__(self) -> str:
        return self.text


@dataclass
class FakeMessage:
    topic_: str
    partition_: int
    offset_: int
    value_: bytes | None
    key_: bytes | None = None
    timestamp_ms: int = 0
    error_: FakeError | None = None

    def error(self) -> FakeError | None:
        return self.error_

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)


@dataclass
class _FakePartition:
    log: list[FakeMessage] = field(default_factory=list)
    position: int = 0


@dataclass
class _Tp:
    topic: str
    partition: int
    offset: int = -1001


class FakeConsumer:
    """One group member over in-memory partition logs.

    ``produce`` appends to a log; ``subscribe`` assigns every partition of the topics at the
    next ``consume`` (resuming at the committed offset), ``rebalance()`` revokes everything and
    assigns it again on the following ``consume``, ``commits`` records each commit call.
    """

    def __init__(self, partitions: Mapping[str, int] | None = None) -> None:
        self.logs: dict[TopicPartition, _FakePartition] = {}
        for topic, count in (partitions or {}).items():
            for p in range(count):
                self.logs[TopicPartition(topic, p)] = _FakePartition()
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.paused: set[TopicPartition] = set()
        self.assigned: list[TopicPartition] = []
        self.closed = False
        self.fail_commits = 0
        self._callbacks: dict[str, Any] = {}
        self._topics: list[str] = []
        self._pending_assign = False
        self.pause_calls = 0
        self.consume_calls = 0

    # test-side helpers
    def produce(self, topic: str, partition: int, value: bytes | None, key: bytes | None = None,
                error: FakeError | None = None) -> int:
        part = self.logs.setdefault(TopicPartition(topic, partition), _FakePartition())
        offset = len(part.log)
        part.log.append(FakeMessage(topic, partition, offset, value, key, 1_000 + offset, error))
        return offset

    def rebalance(self, lost: bool = False) -> None:
        """Revoke (or lose) the whole assignment now; it comes back on the next consume()."""
        revoked = [_Tp(tp.topic, tp.partition) for tp in self.assigned]
        self.assigned = []
        self.paused.clear()
        callback = self._callbacks.get("on_lost" if lost else "on_revoke")
        if callback is not None and revoked:
            callback(self, revoked)
        self._pending_assign = True

    # the confluent_kafka.Consumer slice
    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None,
                  on_lost: Any = None) -> None:
        self._topics = list(topics)
        self._callbacks = {"on_assign": on_assign, "on_revoke": on_revoke, "on_lost": on_lost}
        self._pending_assign = True

    def _assign(self) -> None:
        self._pending_assign = False
        self.assigned = sorted(tp for tp in self.logs if tp.topic in self._topics)
        for tp in self.assigned:
            self.logs[tp].position = self.committed.get(tp, 0)
        callback = self._callbacks.get("on_assign")
        if callback is not None:
            callback(self, [_Tp(tp.topic, tp.partition) for tp in self.assigned])

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if self.closed:
            raise RuntimeError("consumer closed")
        self.consume_calls += 1
        if self._pending_assign:
            self._assign()
        out: list[FakeMessage] = []
        for tp in self.assigned:
            if tp in self.paused:
                continue
            part = self.logs[tp]
            while part.position < len(part.log) and len(out) < num_messages:
                out.append(part.log[part.position])
                part.position += 1
        return out

    def commit(self, *, offsets: list[Any], asynchronous: bool = True) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            from confluent_kafka import KafkaError, KafkaException

            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        done = {TopicPartition(o.topic, o.partition): o.offset for o in offsets}
        self.commits.append(done)
        self.committed.update(done)

    def pause(self, partitions: list[Any]) -> None:
        self.pause_calls += 1
        self.paused.update(TopicPartition(p.topic, p.partition) for p in partitions)

    def resume(self, partitions: list[Any]) -> None:
        self.paused.difference_update(TopicPartition(p.topic, p.partition) for p in partitions)

    def close(self) -> None:
        if self.assigned:
            callback = self._callbacks.get("on_revoke")
            if callback is not None:
                callback(self, [_Tp(tp.topic, tp.partition) for tp in self.assigned])
        self.assigned = []
        self.closed = True


# -- synthetic events --------------------------------------------------------------------------


def synthetic_events(count: int, *, sessions: int = 50, seed: int = 0,
                     start_us: int | None = None, step_us: int = 1_000) -> list[dict[str, Any]]:
    """``count`` valid events spread over ``sessions`` sessions and every payload family with
    typed columns, deterministic for a seed: load for sink tests and benchmarks."""
    import random

    from pipeline.model import new_event, now_us

    rng = random.Random(seed)
    base = now_us() - count * step_us if start_us is None else start_us
    session_ids = [f"sess-{seed}-{i:05d}" for i in range(sessions)]
    makers: list[Callable[[int], tuple[str, dict[str, Any]]]] = [
        lambda i: ("file.write", {"path": f"src/m{i % 97}.py", "lines_added": i % 40,
                                  "lines_removed": i % 7, "size_bytes": 100 + i}),
        lambda i: ("file.read", {"path": f"src/m{i % 97}.py"}),
        lambda i: ("command.executed", {"binary": rng.choice(["pytest", "git", "make", "ruff"]),
                                        "args": ["-q"], "exit_code": rng.choice([0, 0, 0, 1]),
                                        "duration_ms": rng.randint(5, 5_000),
                                        "cpu_user_ms": rng.randint(1, 900)}),
        lambda i: ("test.executed", {"suite": "unit", "test_name": f"test_{i % 301}",
                                     "outcome": rng.choice(["passed", "passed", "failed"]),
                                     "duration_ms": rng.randint(1, 800)}),
        lambda i: ("build.completed", {"component": rng.choice(["api", "web", "cli"]),
                                       "outcome": rng.choice(["success", "failure"]),
                                       "duration_ms": rng.randint(100, 60_000)}),
        lambda i: ("llm.request", {"model": rng.choice(["claude-opus", "claude-sonnet"]),
                                   "input_tokens": rng.randint(100, 9_000),
                                   "output_tokens": rng.randint(10, 2_000),
                                   "cost_usd": round(rng.random() / 10, 5),
                                   "duration_ms": rng.randint(200, 9_000)}),
        lambda i: ("network.request", {"protocol": "https", "domain": "pypi.org",
                                       "status_code": 200, "duration_ms": rng.randint(5, 500)}),
        lambda i: ("resource.sample", {"memory_mib": 256.0 + i % 100, "cpu_pct": 12.5}),
        lambda i: ("agent.task.progress", {"agent_name": "main", "progress_pct": float(i % 100)}),
        lambda i: ("user.prompt", {"prompt_length": 42, "prompt_excerpt": "fix the tests"}),
    ]
    out = []
    for i in range(count):
        event_type, payload = makers[i % len(makers)](i)
        out.append(new_event(event_type, session_ids[rng.randrange(sessions)], payload,
                             source="simulator", timestamp_us=base + i * step_us,
                             metadata={"n": str(i)}))
    return out
