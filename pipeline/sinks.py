"""The sink contract: what a batching consumer hands to a backend (ClickHouse, archive, ...).

The consume loop (``consumers/base.py``) owns Kafka: polling, batching, committing after a
successful write, pausing on backpressure, dropping the batches of revoked partitions. A sink
only writes. In-memory doubles live in ``pipeline/testing.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from pipeline.errors import ItemError

T = TypeVar("T")


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    """One deserialized Kafka message with its coordinates; ``raw`` is the message value as read
    (already redacted upstream on the events topic), kept so a rejected row can be dead-lettered."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    timestamp_ms: int
    raw: bytes

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Records per partition, each list in offset order. ``attempt`` is 1 for the first write of
    this batch and grows with every retry: a sink that may have written part of it on an earlier
    attempt (a timeout after the server applied the insert) must check before writing again."""

    partitions: Mapping[TopicPartition, Sequence[Record[T]]]
    attempt: int = 1

    def __len__(self) -> int:
        return sum(len(r) for r in self.partitions.values())

    def records(self) -> Iterator[Record[T]]:
        for recs in self.partitions.values():
            yield from recs


RejectFn = Callable[["Record[Any]", ItemError], None]
"""Dead-letters one record now and durably (returns once the DLQ has it): a sink calls it for
an item the backend refuses, before it writes anything that comes after that item."""


class Sink(Protocol[T]):
    """A backend written in batches.

    ``write`` returns once every record is either stored or passed to ``reject``; it raises
    ``pipeline.errors.BackpressureError`` (the loop pauses for ``retry_after``) or another
    ``TransientError`` (the loop backs off and retries the same batch with ``attempt + 1``).
    Any other exception is treated like a transient one, logged as a bug: a sink never takes the
    consumer down. ``revoke`` drops any state about partitions this instance no longer owns.
    """

    def write(self, batch: Batch[T], reject: RejectFn) -> None: ...

    def revoke(self, partitions: Sequence[TopicPartition]) -> None: ...

    def close(self) -> None: ...


class DeadLetterSink(Protocol):
    """Where undecodable or rejected records go (``agent.telemetry.dlq`` in production).

    ``publish`` may buffer; ``flush`` returns only when everything published is durable, and
    raises ``TransientError`` when it cannot make it so.
    """

    def publish(self, letter: Mapping[str, object], key: bytes | None) -> None: ...

    def flush(self, timeout_s: float) -> None: ...
