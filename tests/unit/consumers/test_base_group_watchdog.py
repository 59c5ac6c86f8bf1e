"""The batching loop's group watchdog: a consumer that stays out of its group while Kafka
answers turns the loop unhealthy, and is replaced by a fresh one (docs/reliability.md)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.base import BatchingConfig, BatchingConsumer, BatchingMetrics, KafkaConsumer
from pipeline.sinks import TopicPartition
from pipeline.testing import FakeConsumer, InMemoryDeadLetters, InMemorySink

TOPIC = "events"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StuckConsumer(FakeConsumer):
    """Loses its assignment and never rejoins, like librdkafka after the broker outage."""

    def __init__(self) -> None:
        super().__init__({TOPIC: 2})
        self.stuck = False

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        if self.stuck:
            self._pending_assign = False
        return super().consume(num_messages, timeout)


class Kafka:
    """Answers metadata lookups: None while the broker is away, else the partition count."""

    def __init__(self, partitions: int | None) -> None:
        self.partitions = partitions
        self.lookups = 0

    def __call__(self, consumer: KafkaConsumer, topic: str, timeout_s: float) -> int | None:
        self.lookups += 1
        return self.partitions


class Script(threading.Event):
    """Runs the loop, ticking the clock ``tick`` s per step; ``at[step]()`` runs at that step
    (checks and faults); stops after the last scripted step."""

    def __init__(self, clock: Clock, at: dict[int, Callable[[], None]], tick: float = 0.5) -> None:
        super().__init__()
        self.clock, self.at, self.tick, self.step = clock, at, tick, 0

    def is_set(self) -> bool:
        self.clock.now += self.tick
        self.step += 1
        action = self.at.get(self.step)
        if action is not None:
            action()
        return self.step >= max(self.at)


def make(consumer: FakeConsumer, clock: Clock, kafka: Kafka, registry: CollectorRegistry,
         factory: Any = None, **cfg: Any) -> BatchingConsumer[bytes]:
    config = BatchingConfig(**{"unassigned_timeout_s": 6.0, "rejoin_timeout_s": 12.0,
                               "group_check_interval_s": 1.0, "shutdown_flush_timeout_s": 0.0,
                               **cfg})
    return BatchingConsumer(name="t", consumer=consumer, topics=[TOPIC], deserialize=bytes,
                            sink=InMemorySink(), dead_letters=InMemoryDeadLetters(),
                            metrics=BatchingMetrics(registry), config=config, clock=clock,
                            consumer_factory=factory, partition_count=kafka)


def gauge(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("agentwatch_sink_unassigned_seconds", {"sink": "t"})
    assert value is not None
    return value


def lose_group(consumer: StuckConsumer, loop: BatchingConsumer[bytes]) -> None:
    """Step 2 of every script: the loop is in its group, then loses it and cannot rejoin."""
    assert loop.health()["in_group"] and loop.health()["assigned"]
    consumer.stuck = True
    consumer.rebalance(lost=True)


def test_out_of_the_group_while_kafka_answers_turns_unhealthy_with_a_reason() -> None:
    clock, kafka, registry = Clock(), Kafka(2), CollectorRegistry()
    consumer = StuckConsumer()
    loop = make(consumer, clock, kafka, registry)
    seen: dict[str, Any] = {}

    def early() -> None:  # 4 s out of the group: below the 6 s bound
        seen["early"] = loop.health()

    def late() -> None:  # 8 s
        seen["late"] = loop.health()
        seen["gauge"] = gauge(registry)

    loop.run(Script(clock, {2: lambda: lose_group(consumer, loop), 10: early, 18: late}))
    assert seen["early"]["healthy"] and not seen["early"]["in_group"]
    assert seen["early"]["assigned"] == []
    assert not seen["late"]["healthy"]
    assert seen["late"]["reason"].startswith("not_in_group")
    assert seen["late"]["unassigned_s"] >= 6.0
    assert seen["gauge"] >= 6.0


def test_a_broker_outage_is_not_a_stuck_consumer() -> None:
    clock, kafka, registry = Clock(), Kafka(None), CollectorRegistry()
    consumer = StuckConsumer()
    loop = make(consumer, clock, kafka, registry)
    seen: dict[str, Any] = {}

    def broker_back() -> None:  # after 30 s away; the clock starts now, not at the loss
        seen["away"] = (loop.health(), loop.unassigned_for_s(), kafka.lookups, gauge(registry))
        kafka.partitions = 2

    loop.run(Script(clock, {2: lambda: lose_group(consumer, loop), 62: broker_back,
                            66: lambda: seen.setdefault("soon", loop.health()),
                            80: lambda: seen.setdefault("later", loop.health())}))
    health, unassigned, lookups, value = seen["away"]
    assert health["healthy"] and unassigned == 0.0 and lookups > 0 and value == 0.0
    assert seen["soon"]["healthy"]
    assert not seen["later"]["healthy"]


def test_an_idle_member_with_an_empty_assignment_is_healthy() -> None:
    """More group members than partitions: this one is in the group with nothing to read."""
    clock, kafka, registry = Clock(), Kafka(2), CollectorRegistry()
    consumer = FakeConsumer({"other": 1})  # no partition of the subscribed topic for us
    loop = make(consumer, clock, kafka, registry)
    seen: dict[str, Any] = {}
    loop.run(Script(clock, {40: lambda: seen.setdefault("health", loop.health())}))
    health = seen["health"]
    assert health["in_group"] and health["assigned"] == [] and health["healthy"]
    assert kafka.lookups == 1  # only the one before it first joined: none while in the group


def test_a_stuck_consumer_is_replaced_and_the_fresh_one_rejoins() -> None:
    clock, kafka, registry = Clock(), Kafka(2), CollectorRegistry()
    stuck = StuckConsumer()
    fresh = FakeConsumer({TOPIC: 2})
    fresh.produce(TOPIC, 0, b"after")
    made: list[FakeConsumer] = []
    seen: dict[str, Any] = {}

    def factory() -> FakeConsumer:
        made.append(fresh)
        return fresh

    def before() -> None:  # 10 s out: unhealthy, not replaced yet
        seen["before"] = (list(made), loop.health())

    def after() -> None:
        seen["after"] = (list(made), stuck.closed, loop.health(), gauge(registry))

    loop = make(stuck, clock, kafka, registry, factory=factory)
    loop.run(Script(clock, {2: lambda: lose_group(stuck, loop), 22: before, 34: after}))
    made_before, health_before = seen["before"]
    assert made_before == [] and not health_before["healthy"]
    made_after, stuck_closed, health, value = seen["after"]
    assert made_after == [fresh] and stuck_closed
    assert health["healthy"] and health["in_group"]
    assert health["assigned"] == [f"{TOPIC}[0]", f"{TOPIC}[1]"]
    assert value == 0.0
    assert registry.get_sample_value("agentwatch_sink_consumer_recreations_total",
                                     {"sink": "t"}) == 1.0
    assert fresh.committed == {(TOPIC, 0): 1}  # the fresh consumer loads again


def test_callbacks_of_a_replaced_consumer_are_ignored() -> None:
    clock, kafka, registry = Clock(), Kafka(2), CollectorRegistry()
    stuck = StuckConsumer()
    fresh = FakeConsumer({TOPIC: 2})
    loop = make(stuck, clock, kafka, registry, factory=lambda: fresh)
    seen: dict[str, Any] = {}

    def late_callback_of_the_old_client() -> None:
        stuck.assigned = [TopicPartition(TOPIC, 0)]
        stuck.rebalance(lost=True)  # runs the loop's on_lost with the old consumer
        seen["health"] = loop.health()

    loop.run(Script(clock, {2: lambda: lose_group(stuck, loop), 34: late_callback_of_the_old_client}))
    assert seen["health"]["assigned"] == [f"{TOPIC}[0]", f"{TOPIC}[1]"]
    assert seen["health"]["in_group"]


def test_without_a_factory_the_consumer_is_kept() -> None:
    clock, kafka, registry = Clock(), Kafka(2), CollectorRegistry()
    consumer = StuckConsumer()
    loop = make(consumer, clock, kafka, registry)
    seen: dict[str, Any] = {}
    loop.run(Script(clock, {2: lambda: lose_group(consumer, loop),
                            60: lambda: seen.setdefault("health", loop.health())}))
    assert not seen["health"]["healthy"]
    assert registry.get_sample_value("agentwatch_sink_consumer_recreations_total",
                                     {"sink": "t"}) == 0.0


def test_failed_async_commits_are_counted_and_successful_ones_not() -> None:
    from confluent_kafka import KafkaError
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    from consumers.base import commit_reporter

    registry = CollectorRegistry()
    on_commit = commit_reporter(BatchingMetrics(registry), "t")
    ok = KafkaTopicPartition(TOPIC, 0, 5)
    on_commit(None, [ok])
    on_commit(KafkaError(KafkaError._WAIT_COORD), [ok])
    refused = type("Refused", (), {"topic": TOPIC, "partition": 1, "offset": 7,
                                   "error": KafkaError(KafkaError.ILLEGAL_GENERATION)})()
    on_commit(None, [ok, refused])
    assert registry.get_sample_value("agentwatch_sink_commit_failures_total", {"sink": "t"}) == 2.0


def test_a_loop_blocked_inside_one_step_is_unhealthy() -> None:
    """E.g. a synchronous call into the Kafka client that never returns."""
    clock, kafka, registry = Clock(), Kafka(2), CollectorRegistry()
    seen: dict[str, Any] = {}

    class Blocking(FakeConsumer):
        def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
            if self.consume_calls == 3:
                clock.now += 10.0
                seen["short"] = loop.health()
                clock.now += 300.0
                seen["long"] = loop.health()
            return super().consume(num_messages, timeout)

    loop = make(Blocking({TOPIC: 2}), clock, kafka, registry, stall_timeout_s=120.0)
    loop.run(Script(clock, {6: lambda: seen.setdefault("after", loop.health())}))
    assert seen["short"]["healthy"]
    assert not seen["long"]["healthy"] and seen["long"]["reason"].startswith("loop_stalled")
    assert seen["after"]["healthy"]
