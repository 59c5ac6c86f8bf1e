"""StableOffsets asks again while the coordinator says an offset is pending, within a bound."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException

from processors.stable_offsets import StableOffsets


class FakeAdmin:
    """Answers from a script: each entry is the set of partitions still pending, or an error."""

    def __init__(self, script: list[set[tuple[str, int]] | KafkaException]) -> None:
        self.script = script
        self.requests: list[tuple[str, list[tuple[str, int]], bool]] = []

    def list_consumer_group_offsets(self, requests: list[ConsumerGroupTopicPartitions],
                                    **kw: Any) -> dict[str, Future[Any]]:
        (request,) = requests
        asked = [(tp.topic, tp.partition) for tp in request.topic_partitions or []]
        self.requests.append((request.group_id, asked, kw.get("require_stable", False)))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        fut: Future[Any] = Future()
        if isinstance(step, KafkaException):
            fut.set_exception(step)
        else:
            fut.set_result(SimpleNamespace(group_id=request.group_id, topic_partitions=[
                _answer(t, p, pending=(t, p) in step) for t, p in asked]))
        return {request.group_id: fut}


def _answer(topic: str, partition: int, pending: bool) -> SimpleNamespace:
    """As librdkafka answers per partition (its TopicPartition's ``error`` is read-only)."""
    error = KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT) if pending else None
    return SimpleNamespace(topic=topic, partition=partition, offset=-1 if pending else 5,
                           error=error)


def checker(admin: FakeAdmin, timeout_s: float = 5.0) -> StableOffsets:
    return StableOffsets("g", lambda: admin, timeout_s=timeout_s, retry_s=0.001)


def test_asks_with_require_stable_until_nothing_is_pending() -> None:
    admin = FakeAdmin([{("in", 0), ("in", 1)}, {("in", 1)}, set()])
    assert asyncio.run(checker(admin).wait({("in", 0), ("in", 1)})) is True
    assert len(admin.requests) == 3
    assert all(group == "g" and stable for group, _tps, stable in admin.requests)
    assert sorted(admin.requests[0][1]) == [("in", 0), ("in", 1)]


def test_gives_up_after_the_bound_and_says_so() -> None:
    admin = FakeAdmin([{("in", 0)}])
    assert asyncio.run(checker(admin, timeout_s=0.05).wait({("in", 0)})) is False
    assert len(admin.requests) > 1


def test_a_request_level_unstable_error_means_everything_is_pending() -> None:
    admin = FakeAdmin([KafkaException(KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT)), set()])
    assert asyncio.run(checker(admin).wait({("in", 3)})) is True
    assert len(admin.requests) == 2


def test_other_errors_do_not_hold_the_seek() -> None:
    admin = FakeAdmin([KafkaException(KafkaError(KafkaError._TIMED_OUT))])
    assert asyncio.run(checker(admin).wait({("in", 3)})) is True
    assert len(admin.requests) == 1


def test_nothing_assigned_asks_nothing() -> None:
    admin = FakeAdmin([set()])
    assert asyncio.run(checker(admin).wait(set())) is True
    assert admin.requests == []
