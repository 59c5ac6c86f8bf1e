"""The aggregates loop (processors/aggregates_loop.py) against in-memory stand-ins of librdkafka.

A small broker model holds the events partitions, the two changelog topics, the alerts and the
group's committed offsets; only a committed transaction (or, at least once, a flush and a
commit) changes it. The consumer runs the rebalance callbacks inside consume(), as librdkafka
does, and starts an assignment at the committed offsets; the changelog reader hands out what
the broker holds followed by a ``_PARTITION_EOF`` per partition. Every client writes to one call
log, so the order of calls across clients (updates flushed before a transaction, offsets fetched
before the changelogs are read) can be asserted. The real broker side is
tests/integration/processors/test_aggregates_kafka.py.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException, TopicPartition
from kafka_message import Msg
from prometheus_client import CollectorRegistry

from pipeline.errors import TransientError
from pipeline.model import PATTERN_ALERT, WIDGET_UPDATE, new_event
from pipeline.serde import AvroSerde
from processors.aggregates_loop import (
    AggregatesLoop,
    AggregatesLoopConfig,
    AggregatesMetrics,
    Folds,
    LoopClients,
)
from processors.kafka_calls import StageFailedError
from processors.patterns.detectors import PatternConfig
from processors.patterns.processor import PatternProcessor
from processors.state_store import MemoryStore, state_key
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import SEQ_RESTART_GAP, WidgetProcessor, widget_key, widget_partition

EVENTS, WIDGETS, PATTERNS = "events", "widgets", "patterns"
WIDGET_CL, PATTERN_CL = "aw-widget-state-changelog", "aw-pattern-state-changelog"
WIDGET_PARTITIONS = 6
COALESCE_S = 0.25
T0 = 1_800_000_000_000_000
NEVER = 1e9
"""An interval that never passes in a test (checkpoints then come from the event count, a
revocation or the stop)."""

_ids = itertools.count()

Action = str | Callable[["EventsConsumer"], None]


# -- the broker and its clients ------------------------------------------------------------------


@dataclass(frozen=True)
class Produced:
    topic: str
    partition: int
    """-1 when the producer's partitioner chooses."""
    key: bytes | None
    value: bytes | None


@dataclass
class Broker:
    events: dict[int, list[Msg]] = field(default_factory=dict)
    changelogs: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = field(
        default_factory=dict)
    alerts: list[Produced] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    """Every client call, in order: ``<client>.<call>``."""
    commit_attempts: int = 0
    fail_commits: dict[int, KafkaError] = field(default_factory=dict)
    """commit_transaction attempt number (1, 2, ... over every producer) -> the error it raises."""

    def put(self, partition: int, *values: bytes | None) -> None:
        log = self.events.setdefault(partition, [])
        for value in values:
            log.append(Msg(EVENTS, partition, len(log), value))

    def write(self, record: Produced) -> None:
        if record.topic in (WIDGET_CL, PATTERN_CL):
            assert record.partition >= 0, "a changelog record goes to its session's partition"
            self.changelogs.setdefault((record.topic, record.partition), []).append(
                (record.key, record.value))
        elif record.topic == PATTERNS:
            self.alerts.append(record)
        else:
            raise AssertionError(f"unexpected topic {record.topic}")

    def done(self) -> bool:
        return all(self.committed.get(p) == len(log) for p, log in self.events.items())

    def states(self, topic: str) -> dict[str, dict[str, Any]]:
        """The latest state of every session in a changelog topic (what compaction keeps)."""
        out: dict[str, dict[str, Any]] = {}
        for (t, _p), records in sorted(self.changelogs.items()):
            if t != topic:
                continue
            for key, value in records:
                assert key is not None
                if value is None:
                    out.pop(json.loads(key), None)
                else:
                    out[json.loads(key)] = orjson.loads(value)
        return out


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class EventsConsumer:
    """The events consumer: serves the broker's partitions from its positions; the first
    consume() assigns every partition (on_assign, then positions at the committed offsets,
    earliest when none); ``script`` maps a consume call's number (1, 2, ...) to what else happens
    in it: "revoke", "assign", "both" (revoke then assign), "lost", "revoked_late" (messages
    fetched, then a revoke, the messages returned), or a callable run before the fetch. The call
    numbered ``calls`` sets ``stop`` as it returns: the loop folds that batch, then stops."""

    def __init__(self, broker: Broker, stop: threading.Event, clock: Clock, *, calls: int,
                 script: dict[int, Action] | None = None, per_call: int = 100,
                 sizes: dict[int, int] | None = None, tick: float = 0.0) -> None:
        self.broker, self.stop, self.clock = broker, stop, clock
        self.calls, self.script = calls, script or {}
        self.per_call, self.sizes, self.tick = per_call, sizes or {}, tick
        self.callbacks: dict[str, Any] = {}
        self.positions: dict[int, int] = {}
        self.n = 0
        self.seeks: list[tuple[int, int]] = []
        self.committed_failures: list[KafkaError] = []
        """Errors the next committed() calls raise, one each."""
        self.commits: list[list[tuple[int, int]]] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        assert topics == [EVENTS]
        assert set(callbacks) == {"on_assign", "on_revoke", "on_lost"}
        self.callbacks = callbacks

    def _parts(self) -> list[TopicPartition]:
        return [TopicPartition(EVENTS, p) for p in sorted(self.broker.events)]

    def assign(self) -> None:
        self.broker.log.append("consumer.on_assign")
        self.callbacks["on_assign"](self, self._parts())
        self.positions = {tp.partition: self.broker.committed.get(tp.partition, 0)
                          for tp in self._parts()}

    def revoke(self) -> None:
        self.broker.log.append("consumer.on_revoke")
        self.callbacks["on_revoke"](self, self._parts())
        self.broker.log.append("consumer.revoked")
        self.positions = {}

    def lose(self) -> None:
        self.broker.log.append("consumer.on_lost")
        self.callbacks["on_lost"](self, self._parts())
        self.positions = {}

    def _fetch(self, n: int) -> list[Msg]:
        out: list[Msg] = []
        for p in sorted(self.positions):
            log = self.broker.events[p]
            while len(out) < n and self.positions[p] < len(log):
                out.append(log[self.positions[p]])
                self.positions[p] += 1
        return out

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        assert timeout >= 0
        self.n += 1
        self.clock.t += self.tick
        if self.n == 1:
            self.assign()
        n = min(num_messages, self.sizes.get(self.n, self.per_call))
        action = self.script.get(self.n)
        if callable(action):
            action(self)
        if action == "revoked_late":
            fetched = self._fetch(n)
            self.revoke()
        else:
            if action in ("revoke", "both"):
                self.revoke()
            if action == "lost":
                self.lose()
            if action in ("assign", "both"):
                self.assign()
            fetched = self._fetch(n)
        if self.n >= self.calls:
            self.stop.set()
        return fetched

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.broker.log.append("consumer.committed")
        if self.committed_failures:
            raise KafkaException(self.committed_failures.pop(0))
        return [TopicPartition(EVENTS, tp.partition, self.broker.committed.get(tp.partition,
                                                                                OFFSET_INVALID))
                for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.broker.log.append("consumer.seek")
        assert tp.topic == EVENTS
        self.seeks.append((tp.partition, tp.offset))
        self.positions[tp.partition] = 0 if tp.offset == OFFSET_BEGINNING else tp.offset

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.broker.log.append("consumer.commit")
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])
        self.broker.committed.update((tp.partition, tp.offset) for tp in offsets)

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        self.closed = True


class ChangelogReader:
    """The recovery consumer: an assignment reads what the broker holds, then an EOF per partition."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.queue: list[Msg] = []
        self.assigned: list[tuple[str, int]] = []
        self.fail_assign: list[KafkaError] = []
        self.per_call = 2000
        self.on_consume: Callable[[], None] | None = None
        self.closed = False

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.broker.log.append("recovery.assign")
        if self.fail_assign:
            raise KafkaException(self.fail_assign.pop(0))
        assert all(tp.offset == OFFSET_BEGINNING for tp in partitions)
        self.assigned = [(tp.topic, tp.partition) for tp in partitions]
        self.queue = []
        for topic, p in self.assigned:
            for offset, (key, value) in enumerate(self.broker.changelogs.get((topic, p), [])):
                self.queue.append(Msg(topic, p, offset, value, key))
        self.queue += [Msg(t, p, -1, None, error=KafkaError(KafkaError._PARTITION_EOF))
                       for t, p in self.assigned]

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        if self.on_consume is not None:
            self.on_consume()
        assert self.assigned, "consume() on an unassigned reader"
        assert self.queue, "the reader would wait forever"
        n = min(num_messages, self.per_call)
        out, self.queue = self.queue[:n], self.queue[n:]
        return out

    def unassign(self) -> None:
        self.broker.log.append("recovery.unassign")
        self.assigned, self.queue = [], []

    def close(self) -> None:
        self.closed = True


class TxnProducer:
    """The checkpoint producer: transactional (what is produced reaches the broker with its
    offsets at commit_transaction), or plain (it reaches the broker at flush)."""

    def __init__(self, broker: Broker, name: str) -> None:
        self.broker, self.name = broker, name
        self.calls: list[str] = []
        self.fail: dict[str, list[KafkaError]] = {}
        self.open: list[Produced] = []
        self.deliveries: list[Callable[[Any, Any], None]] = []
        self.pending_offsets: list[tuple[int, int]] = []
        self.transactions: list[tuple[list[Produced], list[tuple[int, int]]]] = []
        """Committed transactions: (records, offsets)."""

    def _call(self, what: str) -> None:
        self.calls.append(what)
        self.broker.log.append(f"{self.name}.{what}")
        errors = self.fail.get(what)
        if errors:
            raise KafkaException(errors.pop(0))

    def init_transactions(self, timeout: float) -> None:
        self._call("init")

    def begin_transaction(self) -> None:
        self._call("begin")
        assert not self.open and not self.pending_offsets

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                on_delivery: Callable[[Any, Any], None] | None = None, partition: int = -1) -> None:
        self.calls.append(f"produce {topic}")
        self.broker.log.append(f"{self.name}.produce {topic}")
        self.open.append(Produced(topic, partition, key, value))
        if on_delivery is not None:
            self.deliveries.append(on_delivery)

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any,
                                    timeout: float) -> None:
        assert metadata == "group-metadata"
        assert all(tp.topic == EVENTS for tp in offsets)
        self._call("send_offsets")
        self.pending_offsets = [(tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout: float) -> None:
        self.broker.commit_attempts += 1
        scheduled = self.broker.fail_commits.pop(self.broker.commit_attempts, None)
        if scheduled is not None:
            self.fail.setdefault("commit", []).insert(0, scheduled)
        self._call("commit")
        for record in self.open:
            self.broker.write(record)
        self.broker.committed.update(self.pending_offsets)
        self.transactions.append((self.open, self.pending_offsets))
        self.open, self.pending_offsets = [], []

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort")
        self.open, self.pending_offsets = [], []

    def purge(self) -> None:
        self._call("purge")
        self.open = []

    def flush(self, timeout: float) -> int:
        self._call("flush")
        for record in self.open:
            self.broker.write(record)
        self.open = []
        deliveries, self.deliveries = self.deliveries, []
        for deliver in deliveries:
            deliver(None, None)
        return 0

    def poll(self, timeout: float) -> int:
        return 0


class UpdatesProducer:
    """The plain widget-updates producer; a delivery report per record at the next poll/flush."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.sent: list[Produced] = []
        self.undelivered: list[Callable[[Any, Any], None]] = []
        self.delivery_errors: list[str | None] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                on_delivery: Callable[[Any, Any], None] | None = None, partition: int = -1) -> None:
        self.broker.log.append("updates.produce")
        self.sent.append(Produced(topic, partition, key, value))
        if on_delivery is not None:
            self.undelivered.append(on_delivery)

    def _deliver(self) -> None:
        undelivered, self.undelivered = self.undelivered, []
        for deliver in undelivered:
            deliver(self.delivery_errors.pop(0) if self.delivery_errors else None, None)

    def poll(self, timeout: float) -> int:
        self._deliver()
        return 0

    def flush(self, timeout: float) -> int:
        self.broker.log.append("updates.flush")
        self._deliver()
        return 0


# -- a loop over them ----------------------------------------------------------------------------


@dataclass
class Rig:
    broker: Broker
    stop: threading.Event
    clock: Clock
    consumer: EventsConsumer
    recovery: ChangelogReader
    updates: UpdatesProducer
    producers: list[TxnProducer]
    registry: CollectorRegistry
    widgets: WidgetProcessor
    widget_store: MemoryStore
    pattern_store: MemoryStore
    loop: AggregatesLoop
    serde: AvroSerde

    def run(self) -> None:
        self.loop.run(self.stop)

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def update_values(self, sent: list[Produced] | None = None) -> list[dict[str, Any]]:
        out = []
        for record in self.updates.sent if sent is None else sent:
            assert record.value is not None
            name, value = self.serde.decode(record.value)
            assert name == WIDGET_UPDATE
            out.append(value)
        return out

    def txn_log(self) -> list[str]:
        return [c for c in self.broker.log if c.startswith("txn")]


def make_rig(serde: AvroSerde, broker: Broker, *, calls: int, script: dict[int, Action] | None = None,
             transactional: bool = True, per_call: int = 100, sizes: dict[int, int] | None = None,
             tick: float = 0.0, max_events: int = 1_000_000, interval_s: float = NEVER,
             loop_serde: AvroSerde | None = None,
             producer_failures: dict[int, dict[str, list[KafkaError]]] | None = None) -> Rig:
    """``producer_failures``: by the number of the producer_factory() call (0, 1, ...), the
    errors its calls raise."""
    stop, clock = threading.Event(), Clock()
    consumer = EventsConsumer(broker, stop, clock, calls=calls, script=script, per_call=per_call,
                              sizes=sizes, tick=tick)
    recovery = ChangelogReader(broker)
    updates = UpdatesProducer(broker)
    producers: list[TxnProducer] = []

    def factory() -> Any:
        producer = TxnProducer(broker, "txn")
        producer.fail = {k: list(v) for k, v in (producer_failures or {}).get(len(producers), {}).items()}
        producers.append(producer)
        return producer

    widget_store, pattern_store = MemoryStore(WIDGET_CL), MemoryStore(PATTERN_CL)
    widgets = WidgetProcessor(widget_store, Coalescer(COALESCE_S, clock), WIDGET_PARTITIONS)
    patterns = PatternProcessor(pattern_store, PatternConfig(), clock_us=lambda: T0 + 60_000_000)
    registry = CollectorRegistry()
    loop = AggregatesLoop(
        LoopClients(cast(Any, consumer), factory, cast(Any, updates), cast(Any, recovery)),
        Folds(widgets, widget_store, patterns, pattern_store), loop_serde or serde,
        AggregatesLoopConfig(EVENTS, WIDGETS, PATTERNS, transactional=transactional, batch_max=100,
                             checkpoint_interval_s=interval_s, checkpoint_max_events=max_events,
                             stall_check_interval_s=NEVER),
        AggregatesMetrics(registry), clock=clock)
    return Rig(broker, stop, clock, consumer, recovery, updates, producers, registry, widgets,
               widget_store, pattern_store, loop, serde)


def event(session: str, event_type: str = "file.write", payload: dict[str, Any] | None = None,
          ) -> dict[str, Any]:
    n = next(_ids)
    body = payload if payload is not None else (
        {"path": f"src/f{n % 3}.py", "lines_added": 1} if event_type == "file.write" else {})
    return new_event(event_type, session, body, timestamp_us=T0 + n * 1000, event_id=f"ev-{n}",
                     agent="main", source="hook")


def writes(serde: AvroSerde, session: str, n: int) -> list[bytes | None]:
    return [serde.encode_event(event(session)) for _ in range(n)]


def task_done(serde: AvroSerde, session: str) -> bytes:
    return serde.encode_event(event(session, "agent.task.completed", {"task_type": "fix"}))


def abortable(reason: str = "fenced by a new generation") -> KafkaError:
    return KafkaError(KafkaError._FENCED, reason, txn_requires_abort=True)


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processors.aggregates_loop.RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr("processors.kafka_calls.RETRY_PAUSE_S", 0.0)


# -- 1. a checkpoint is one transaction ------------------------------------------------------------


def test_a_checkpoint_commits_states_alerts_and_offsets_in_one_transaction(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2), task_done(serde, "s0"))
    broker.put(1, *writes(serde, "s1", 1))
    # A checkpoint is due after every call; only the first one has folded anything.
    rig = make_rig(serde, broker, calls=3, tick=5.0, interval_s=1.0)
    rig.run()

    producer, = rig.producers
    assert producer.calls[0] == "init"
    assert rig.txn_log().count("txn.begin") == 1  # later checkpoints had nothing to commit
    body = producer.calls[producer.calls.index("begin"):]
    produced = [c for c in body if c.startswith("produce")]
    assert body == ["begin", *produced, "send_offsets", "commit"]
    (records, offsets), = producer.transactions
    assert offsets == [(0, 3), (1, 1)]  # the next offset of every partition folded
    assert len(produced) == len(records) == 2 + 2 + 1

    changelog = {(r.topic, r.key): r for r in records if r.topic in (WIDGET_CL, PATTERN_CL)}
    for sid, partition, events in (("s0", 0, 3), ("s1", 1, 1)):
        for topic, store in ((WIDGET_CL, rig.widget_store), (PATTERN_CL, rig.pattern_store)):
            record = changelog[(topic, json.dumps(sid).encode())]
            assert record.partition == partition  # the session's events partition
            assert record.value == orjson.dumps(store.get(sid))
            assert record.key == state_key(sid)
        assert orjson.loads(changelog[(WIDGET_CL, state_key(sid))].value or b"")["w"]["events"] == events
    alert, = (r for r in records if r.topic == PATTERNS)
    assert alert.key == b"s0" and alert.partition == -1  # keyed: the partitioner chooses
    name, value = serde.decode(alert.value or b"")
    assert (name, value["pattern"], value["session_id"]) == (PATTERN_ALERT, "task_completed", "s0")

    assert broker.committed == {0: 3, 1: 1}
    assert rig.consumer.commits == []  # offsets travel with the transaction only
    assert rig.metric("agentwatch_aggregates_checkpoints_total", outcome="committed") == 1
    assert rig.metric("agentwatch_pattern_alerts_total", pattern="task_completed") == 1


def test_a_checkpoint_with_nothing_folded_commits_nothing(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0)
    rig = make_rig(serde, broker, calls=4, tick=5.0, interval_s=1.0)
    rig.run()
    assert rig.producers[0].calls == ["init"]
    assert broker.committed == {}


def test_each_checkpoint_commits_only_what_changed_since_the_last(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    broker.put(1, *writes(serde, "s1", 2))
    # One event per call, a checkpoint after every two: p0 first, then p1 alone.
    rig = make_rig(serde, broker, calls=4, per_call=1, max_events=2)
    rig.run()
    txns = rig.producers[0].transactions
    assert [offsets for _, offsets in txns] == [[(0, 2)], [(1, 2)]]
    assert [{json.loads(r.key or b"") for r in records} for records, _ in txns] == [{"s0"}, {"s1"}]


def test_at_least_once_produces_flushes_then_commits_the_offsets(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2), task_done(serde, "s0"))
    rig = make_rig(serde, broker, calls=1, transactional=False)
    rig.run()
    calls = rig.producers[0].calls
    assert "init" not in calls and "begin" not in calls
    checkpoint = [c for c in broker.log if c in ("txn.flush", "consumer.commit")
                  or c.startswith("txn.produce")]
    assert checkpoint == ["txn.produce " + WIDGET_CL, "txn.produce " + PATTERN_CL,
                          "txn.produce " + PATTERNS, "txn.flush", "consumer.commit",
                          "txn.flush"]  # the last: close()
    assert rig.consumer.commits == [[(0, 3)]]
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 3 and len(broker.alerts) == 1


# -- 2. widget updates go out at once, on their own producer ---------------------------------------


def test_widget_updates_go_out_when_due_before_any_checkpoint(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 1))
    broker.put(1, *writes(serde, "s1", 1))
    seen: dict[str, Any] = {}

    def look(consumer: EventsConsumer) -> None:
        seen["updates"] = list(rig.updates.sent)
        seen["log"] = list(broker.log)

    rig = make_rig(serde, broker, calls=2, script={2: look})
    rig.run()

    # Sent after the first consume call, while no transaction had begun.
    assert seen["updates"] and "txn.begin" not in seen["log"]
    sent = seen["updates"]
    values = rig.update_values(sent)
    for record, value in zip(sent, values, strict=True):
        sid = value["session_id"]
        assert record.topic == WIDGETS
        assert record.partition == widget_partition(sid, WIDGET_PARTITIONS)
        assert record.key == widget_key(sid, value["widget"])
    assert {v["session_id"] for v in values} == {"s0", "s1"}
    assert [v["version"] for v in values if v["session_id"] == "s0"] == list(
        range(1, sum(v["session_id"] == "s0" for v in values) + 1))
    assert rig.producers[0].calls == ["init", "begin", "produce " + WIDGET_CL,
                                      "produce " + WIDGET_CL, "produce " + PATTERN_CL,
                                      "produce " + PATTERN_CL, "send_offsets", "commit"]
    assert rig.metric("agentwatch_widget_updates_total", widget="session_summary") == 2


def test_a_checkpoint_confirms_the_updates_before_its_transaction(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 3))
    rig = make_rig(serde, broker, calls=3, per_call=1, max_events=2, tick=1.0)
    rig.run()
    log = [c for c in broker.log if c in ("updates.flush", "txn.begin", "txn.commit")]
    assert log == ["updates.flush", "txn.begin", "txn.commit"] * 2 + ["updates.flush"]
    # The committed state records the sent updates: nothing left pending, its seq the last sent.
    state = broker.states(WIDGET_CL)["s0"]
    assert state["pending"] == []
    assert state["seq"] == max(v["version"] for v in rig.update_values())


def test_an_update_not_delivered_gives_up_the_checkpoint(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    rig = make_rig(serde, broker, calls=3, per_call=1, max_events=1, tick=1.0)
    rig.updates.delivery_errors = ["Broker: Not enough in-sync replicas"]
    rig.run()
    # The first checkpoint did not begin a transaction: it reset the state and folded again.
    assert rig.metric("agentwatch_aggregates_resets_total") == 1
    assert rig.metric("agentwatch_aggregates_checkpoints_total", outcome="aborted") == 1
    assert rig.consumer.seeks == [(0, OFFSET_BEGINNING)]
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 2 and broker.committed == {0: 2}


# -- 3. revocation and loss ------------------------------------------------------------------------


def test_a_revocation_commits_what_was_folded_then_forgets_the_sessions(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2), task_done(serde, "s0"))
    broker.put(1, *writes(serde, "s1", 1))
    after: dict[str, Any] = {}

    def look(consumer: EventsConsumer) -> None:
        after.update(widgets=len(rig.widget_store), patterns=len(rig.pattern_store),
                     assigned=rig.loop.snapshot().assigned, pending=rig.widgets.coalescer.pending())

    rig = make_rig(serde, broker, calls=3, script={2: "revoke", 3: look})
    rig.run()

    log = broker.log
    revoke, revoked = log.index("consumer.on_revoke"), log.index("consumer.revoked")
    inside = log[revoke:revoked]
    assert "txn.begin" not in log[:revoke]
    assert [c for c in inside if c in ("updates.flush", "txn.begin", "txn.send_offsets",
                                       "txn.commit")] == [
        "updates.flush", "txn.begin", "txn.send_offsets", "txn.commit"]
    assert broker.committed == {0: 3, 1: 1}
    assert len(broker.alerts) == 1
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 3
    assert after == {"widgets": 0, "patterns": 0, "assigned": (), "pending": 0}
    assert log.count("txn.begin") == 1  # the stop after it has nothing of its own to commit


def test_a_lost_assignment_is_forgotten_without_committing(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2), task_done(serde, "s0"))
    broker.put(1, *writes(serde, "s1", 1))
    after: dict[str, Any] = {}

    def look(consumer: EventsConsumer) -> None:
        after.update(widgets=len(rig.widget_store), patterns=len(rig.pattern_store),
                     assigned=rig.loop.snapshot().assigned)

    rig = make_rig(serde, broker, calls=4, script={2: "lost", 3: look})
    rig.run()
    assert rig.producers[0].calls == ["init"]
    assert rig.consumer.commits == [] and broker.committed == {}
    assert broker.changelogs == {} and broker.alerts == []
    assert after == {"widgets": 0, "patterns": 0, "assigned": ()}


def test_after_a_revocation_and_a_new_assignment_folding_resumes_from_the_changelog(
        serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 3))
    rig = make_rig(serde, broker, calls=4, per_call=2, script={2: "both"})
    rig.run()
    # Events 0-1 folded, committed at the revocation; recovered, then 2 folded on top.
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 3
    assert broker.committed == {0: 3}
    assert rig.metric("agentwatch_aggregates_recovered_states_total") == 2  # widget + pattern
    assert rig.metric("agentwatch_widget_events_total") == 3
    # The group changed: the transaction after it runs on a renewed producer.
    assert len(rig.producers) == 2 and rig.producers[0].calls[-2:] == ["purge", "flush"]
    assert rig.producers[1].calls[:2] == ["init", "begin"]


# -- 4. recovery on assignment ---------------------------------------------------------------------


def first_owner(serde: AvroSerde, broker: Broker) -> Rig:
    """A previous worker: folds and commits everything the broker holds, then stops."""
    rig = make_rig(serde, broker, calls=1)
    rig.run()
    assert broker.done()
    return rig


def test_an_assignment_fetches_the_offsets_then_reads_the_changelogs(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 3))
    broker.put(1, *writes(serde, "s1", 2))
    before = first_owner(serde, broker)
    broker.put(0, *writes(serde, "s0", 2))
    broker.log.clear()

    rig = make_rig(serde, broker, calls=1)
    rig.run()
    assign = [c for c in broker.log if c.startswith(("consumer.", "recovery."))]
    assert assign[:4] == ["consumer.on_assign", "consumer.committed", "recovery.assign",
                          "recovery.unassign"]
    # Counts go on from the recovered states: nothing reset, nothing counted twice.
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 5
    assert broker.states(WIDGET_CL)["s1"]["w"]["events"] == 2
    assert rig.metric("agentwatch_widget_events_total") == 2
    assert rig.metric("agentwatch_aggregates_recovered_states_total") == 4
    assert broker.committed == {0: 5, 1: 2}
    # A new process: its first update of a recovered session skips SEQ_RESTART_GAP numbers.
    last_before = max(v["version"] for v in before.update_values() if v["session_id"] == "s0")
    first_after = min(v["version"] for v in rig.update_values() if v["session_id"] == "s0")
    assert first_after == last_before + SEQ_RESTART_GAP + 1


def test_events_at_or_before_a_recovered_position_are_skipped(serde: AvroSerde) -> None:
    """A state ahead of the committed offsets (a checkpoint whose offsets were lost, at least
    once): the events in between arrive again and are not folded twice. More of them than the
    state's recent event ids hold, so the recorded position is what skips the oldest."""
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 40), task_done(serde, "s0"))
    first_owner(serde, broker)
    broker.put(0, *writes(serde, "s0", 2))
    broker.committed[0] = 1

    rig = make_rig(serde, broker, calls=1)
    rig.run()
    state = broker.states(WIDGET_CL)["s0"]
    assert state["w"]["events"] == 43 and state["pos"] == [0, 42]
    assert rig.metric("agentwatch_widget_replays_skipped_total") == 40
    assert rig.metric("agentwatch_pattern_replays_skipped_total") == 40
    assert rig.metric("agentwatch_widget_events_total") == 2
    assert len(broker.alerts) == 1  # the task_completed alert is not raised again
    assert broker.committed == {0: 43}


def test_updates_a_previous_owner_never_sent_go_out_after_the_recovery(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    # One event per call on a clock that stands still: the second event's widgets are still
    # inside their coalescing interval when the stop commits the state.
    before = make_rig(serde, broker, calls=2, per_call=1)
    before.run()
    pending = broker.states(WIDGET_CL)["s0"]["pending"]
    assert pending and broker.done()

    rig = make_rig(serde, broker, calls=1)
    rig.run()
    assert sorted(v["widget"] for v in rig.update_values()) == sorted(pending)
    assert broker.states(WIDGET_CL)["s0"]["pending"] == []


def test_a_recovery_that_fails_retriably_is_tried_again(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    first_owner(serde, broker)
    broker.put(0, *writes(serde, "s0", 1))
    rig = make_rig(serde, broker, calls=1)
    rig.recovery.fail_assign = [KafkaError(KafkaError._TRANSPORT, "broker down", retriable=True)]
    rig.run()
    assert [c for c in broker.log if c == "recovery.assign"][-2:] == ["recovery.assign"] * 2
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 3
    assert rig.loop.snapshot().failure is None


def test_a_stop_during_recovery_ends_the_loop_quietly(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    first_owner(serde, broker)
    rig = make_rig(serde, broker, calls=5)
    rig.recovery.per_call = 1
    rig.recovery.on_consume = rig.stop.set
    rig.run()
    assert rig.loop.snapshot().assigned == () and rig.loop.snapshot().failure is None
    assert "recovery.unassign" in broker.log and rig.consumer.closed and rig.recovery.closed
    assert rig.producers[0].calls == ["init"]


# -- 5. an aborted transaction resets -----------------------------------------------------------


def test_an_abortable_failure_reloads_state_and_folds_again(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 3))
    broker.fail_commits[2] = abortable()
    # One event per call, a checkpoint after each: the second checkpoint aborts.
    rig = make_rig(serde, broker, calls=5, per_call=1, max_events=1, tick=1.0)
    rig.run()

    assert len(rig.producers) == 2  # renewed
    first, second = rig.producers
    assert first.calls[-4:] == ["commit", "abort", "purge", "flush"]
    assert second.calls[:2] == ["init", "begin"]
    assert rig.consumer.seeks == [(0, 1)]  # back to the committed offset
    log = broker.log
    abort = log.index("txn.abort")
    assert log[abort:].index("consumer.committed") < log[abort:].index("recovery.assign") < \
        log[abort:].index("consumer.seek") < log[abort:].index("txn.init")
    assert rig.metric("agentwatch_aggregates_resets_total") == 1
    assert rig.metric("agentwatch_aggregates_checkpoints_total", outcome="aborted") == 1

    # Nothing counted twice, nothing lost.
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 3
    assert broker.committed == {0: 3}

    # The versions: checkpoint 1 committed seq S; the aborted round sent S+1 .. T; after the
    # reset the next update jumps past every number taken: T + SEQ_RESTART_GAP + 1.
    committed_seq = orjson.loads(first.transactions[0][0][0].value or b"")["seq"]
    versions = [v["version"] for v in rig.update_values()]
    resumed = next(i for i, v in enumerate(versions) if v > committed_seq + SEQ_RESTART_GAP)
    taken = max(versions[:resumed])
    assert taken > committed_seq  # the aborted round had sent some
    assert versions[resumed] == taken + SEQ_RESTART_GAP + 1


def test_a_reset_waits_out_a_committed_offsets_timeout(serde: AvroSerde) -> None:
    """committed() times out with a plain, non-retriable _TIMED_OUT while the broker is away:
    a 60 s outage in CI crashed the worker when a reset met it. Only a fatal error may stop it."""
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 3))
    broker.fail_commits[2] = abortable()
    rig = make_rig(serde, broker, calls=5, per_call=1, max_events=1, tick=1.0)
    timed_out = KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets: Local: Timed out")
    # The assignment's fetch succeeds; the reset's first two time out.
    original = rig.consumer.committed
    calls = {"n": 0}

    def committed(partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            broker.log.append("consumer.committed")
            raise KafkaException(timed_out)
        return original(partitions, timeout)

    rig.consumer.committed = committed  # type: ignore[method-assign]
    rig.run()
    assert rig.loop.snapshot().failure is None
    assert calls["n"] >= 4
    assert rig.metric("agentwatch_aggregates_resets_total") == 1
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 3
    assert broker.committed == {0: 3}


def test_a_fatal_error_while_recovering_stops_the_loop(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 1))
    rig = make_rig(serde, broker, calls=3)
    rig.consumer.committed_failures = [KafkaError(KafkaError._FATAL, "fenced", fatal=True)]
    with pytest.raises(StageFailedError, match="assignment: fenced"):
        rig.run()
    assert rig.loop.snapshot().failure is not None


def test_an_abort_that_is_not_confirmed_still_resets(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    broker.fail_commits[1] = abortable()
    rig = make_rig(serde, broker, calls=3, per_call=1, max_events=1, tick=1.0)
    rig.producers[0].fail["abort"] = [
        KafkaError(KafkaError._TIMED_OUT, "abort timed out", retriable=True)]
    rig.run()
    assert rig.producers[0].calls[-3:] == ["abort", "purge", "flush"]
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 2 and broker.committed == {0: 2}


def test_a_retriable_failure_repeats_the_call_without_a_reset(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    rig = make_rig(serde, broker, calls=2, max_events=1)
    rig.producers[0].fail["commit"] = [KafkaError(KafkaError._TIMED_OUT, "coordinator away",
                                                  retriable=True)]
    rig.run()
    assert rig.producers[0].calls[-2:] == ["commit", "commit"]
    assert rig.metric("agentwatch_aggregates_resets_total") == 0
    assert broker.committed == {0: 2}


def test_a_schema_registry_that_does_not_answer_folds_the_record_again(serde: AvroSerde) -> None:
    class FlakySerde(AvroSerde):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 1

        def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
            if self.failures:
                self.failures -= 1
                raise TransientError("registry timed out")
            return super().decode(data)

    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    rig = make_rig(serde, broker, calls=3, loop_serde=FlakySerde())
    rig.run()
    assert rig.metric("agentwatch_aggregates_resets_total") == 1
    assert rig.consumer.seeks == [(0, OFFSET_BEGINNING)]
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 2 and broker.committed == {0: 2}


# -- 6. records that are not events -------------------------------------------------------------


def test_a_record_that_is_not_a_telemetry_event_is_skipped_and_its_offset_committed(
        serde: AvroSerde) -> None:
    foreign = serde.encode(WIDGET_UPDATE, {"session_id": "s9", "widget": "cost", "data_json": "{}",
                                           "version": 1, "timestamp": 0, "agent": None})
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 1), b"\x00garbage", foreign, None, *writes(serde, "s0", 1))
    broker.put(1, b"\xc3\x01not an event")
    rig = make_rig(serde, broker, calls=2, per_call=3)
    rig.run()
    assert rig.metric("agentwatch_aggregates_undecodable_total") == 4
    assert broker.committed == {0: 5, 1: 1}
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == 2
    assert set(broker.states(WIDGET_CL)) == {"s0"}
    assert rig.loop.snapshot().failure is None


# -- 7. fatal errors ---------------------------------------------------------------------------


def test_a_fatal_error_stops_the_loop_and_reports_it(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    rig = make_rig(serde, broker, calls=3, max_events=2)
    rig.producers[0].fail["send_offsets"] = [
        KafkaError(KafkaError._FENCED, "producer fenced", fatal=True)]
    with pytest.raises(StageFailedError, match="producer fenced"):
        rig.run()
    snapshot = rig.loop.snapshot()
    assert not snapshot.running
    assert snapshot.failure is not None and "send_offsets_to_transaction" in snapshot.failure
    assert broker.committed == {} and broker.changelogs == {}
    assert rig.consumer.closed and rig.recovery.closed
    assert rig.consumer.n == 1  # no consume call after the failure


def test_a_fatal_consumer_error_stops_the_loop(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 1))
    broker.events[0].append(Msg(EVENTS, 0, 1, None, error=KafkaError(
        KafkaError._FATAL, "consumer fenced", fatal=True)))
    rig = make_rig(serde, broker, calls=3)
    with pytest.raises(StageFailedError, match="consumer fenced"):
        rig.run()
    assert rig.loop.snapshot().failure is not None and broker.committed == {}


def test_a_fatal_error_on_a_revocation_checkpoint_stops_the_loop(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 1))
    rig = make_rig(serde, broker, calls=3, script={2: "revoke"})
    rig.producers[0].fail["commit"] = [KafkaError(KafkaError._FENCED, "epoch fenced", fatal=True)]
    with pytest.raises(StageFailedError, match="epoch fenced"):
        rig.run()
    assert rig.loop.snapshot().failure is not None


# -- rebalances anywhere -------------------------------------------------------------------------


SCRIPTS: dict[str, tuple[dict[int, Action], dict[int, KafkaError]]] = {
    **{f"both@{k}": ({k: "both"}, {}) for k in range(1, 8)},
    **{f"split@{k}": ({k: "revoke", k + 1: "assign"}, {}) for k in range(1, 8)},
    **{f"lost@{k}": ({k: "lost", k + 1: "assign"}, {}) for k in range(1, 8)},
    **{f"revoked_late@{k}": ({k: "revoked_late", k + 2: "assign"}, {}) for k in range(1, 8)},
    **{f"abort@{k}": ({}, {k: abortable()}) for k in range(1, 5)},
    **{f"revoke_aborts@{k}": ({k: "both"}, {1: abortable()}) for k in range(2, 6)},
}


PARAMS = [pytest.param(actions, failures, transactional,
                       id=f"{name}-{'exactly_once' if transactional else 'at_least_once'}")
          for name, (actions, failures) in SCRIPTS.items()
          for transactional in (True, False) if transactional or not failures]


@pytest.mark.parametrize(("actions", "failures", "transactional"), PARAMS)
def test_a_rebalance_or_abort_anywhere_counts_every_event_once(
        serde: AvroSerde, actions: dict[int, Action], failures: dict[int, KafkaError],
        transactional: bool) -> None:
    """Wherever a rebalance, a loss or an abort falls, the committed states count every event
    once, every alert is committed once, and every offset is committed."""
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 3), task_done(serde, "s0"), *writes(serde, "s2", 2))
    broker.put(1, *writes(serde, "s1", 2), task_done(serde, "s1"), *writes(serde, "s1", 1))
    broker.fail_commits.update(failures)
    rig = make_rig(serde, broker, calls=16, script=actions, per_call=2, max_events=3, tick=0.5,
                   interval_s=2.0,
                   transactional=transactional)
    rig.run()
    assert broker.done(), broker.committed
    widgets, patterns = broker.states(WIDGET_CL), broker.states(PATTERN_CL)
    assert {sid: st["w"]["events"] for sid, st in widgets.items()} == {"s0": 4, "s1": 4, "s2": 2}
    assert set(patterns) == {"s0", "s1", "s2"}
    alerts = Counter(serde.decode(a.value or b"")[1]["session_id"] for a in broker.alerts)
    assert alerts == {"s0": 1, "s1": 1}
    assert all(st["pending"] == [] for st in widgets.values())


# -- version numbers across a state dropped uncommitted ---------------------------------------


def reused_versions(rig: Rig, session: str) -> dict[int, set[str]]:
    """Versions of the session's updates that were sent for more than one content (the
    SEQ_RESTART_GAP promise: a number is never reused for different content)."""
    contents: dict[int, set[str]] = {}
    for v in rig.update_values():
        if v["session_id"] == session:
            contents.setdefault(v["version"], set()).add(f"{v['widget']} {v['data_json']}")
    return {version: c for version, c in contents.items() if len(c) > 1}


@pytest.mark.parametrize(("events", "fail_commit", "rig_args"), [
    # Call 1: e0-e1, checkpoint; call 2: e2 sent, not committed; call 3: lost; call 4: the
    # partition back to this worker, e2-e3 folded again in one batch.
    (4, None, {"calls": 5, "script": {3: "lost", 4: "assign"}, "per_call": 2, "sizes": {2: 1},
               "max_events": 2}),
    # The same, but a revocation whose checkpoint aborts takes the partition away.
    (4, 2, {"calls": 4, "script": {3: "both"}, "per_call": 2, "sizes": {2: 1}, "max_events": 2}),
    # Call 1: e0 sent, its checkpoint aborts (the session was never committed); call 2: e0-e1
    # folded again in one batch.
    (2, 1, {"calls": 3, "per_call": 2, "sizes": {1: 1}, "max_events": 1}),
], ids=["lost-assignment-comes-back", "revocation-whose-checkpoint-aborted",
        "reset-of-a-session-never-committed"])
def test_versions_are_never_reused(serde: AvroSerde, events: int, fail_commit: int | None,
                                   rig_args: dict[str, Any]) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", events))
    if fail_commit is not None:
        broker.fail_commits[fail_commit] = abortable()
    rig = make_rig(serde, broker, tick=1.0, **rig_args)
    rig.run()
    assert broker.states(WIDGET_CL)["s0"]["w"]["events"] == events
    assert reused_versions(rig, "s0") == {}


# -- stopping while Kafka is away --------------------------------------------------------------


def test_a_stop_while_the_renewed_producer_cannot_init_ends_the_loop_quietly(
        serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 2))
    # Call 1: e0; call 2: a rebalance (its checkpoint commits e0, the producer is to be renewed),
    # then e1 and the stop: the final checkpoint renews the producer, whose init times out.
    rig = make_rig(serde, broker, calls=2, per_call=1, script={2: "both"}, producer_failures={
        1: {"init": [KafkaError(KafkaError._TIMED_OUT, "coordinator away", retriable=True)]}})
    rig.run()
    assert broker.committed == {0: 1}  # e1 is the next owner's to fold


def test_a_stop_during_the_reload_of_a_reset_ends_the_loop_quietly(serde: AvroSerde) -> None:
    broker = Broker()
    broker.put(0, *writes(serde, "s0", 1))
    broker.fail_commits[1] = abortable()
    rig = make_rig(serde, broker, calls=3, max_events=1)

    def stop_on_the_second_recovery() -> None:
        if broker.log.count("recovery.assign") == 2:  # the reset's, not the assignment's
            rig.stop.set()

    rig.recovery.per_call = 1
    rig.recovery.on_consume = stop_on_the_second_recovery
    rig.run()
    assert rig.loop.snapshot().failure is None and broker.committed == {}
