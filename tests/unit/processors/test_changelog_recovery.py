"""read_to_end (processors/changelog_recovery.py) against a scripted consumer."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from kafka_message import Msg

from processors.changelog_recovery import StoppedError, read_to_end
from processors.kafka_calls import StageFailedError

WIDGETS, PATTERNS = "widget-changelog", "pattern-changelog"




def eof(topic: str, partition: int) -> Msg:
    return Msg(topic, partition, error=KafkaError(KafkaError._PARTITION_EOF, "no more messages"))


class Reader:
    """Hands out one scripted batch per consume() call; records every call."""

    def __init__(self, batches: list[list[Msg]], stop: threading.Event | None = None,
                 stop_after: int | None = None) -> None:
        self.batches = batches
        self.calls: list[str] = []
        self.assigned: list[tuple[str, int, int]] = []
        self.stop, self.stop_after = stop, stop_after
        self.consumed = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.calls.append("assign")
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        self.calls.append("consume")
        self.consumed += 1
        if self.stop is not None and self.consumed == self.stop_after:
            self.stop.set()
        assert self.batches, "read_to_end would wait for ever"
        return self.batches.pop(0)[:num_messages]

    def unassign(self) -> None:
        self.calls.append("unassign")


def read(reader: Reader, partitions: list[tuple[str, int]],
         stop: threading.Event | None = None) -> list[tuple[str, bytes | None, bytes | None]]:
    return read_to_end(cast(Any, reader), partitions, stop or threading.Event())


def test_reads_every_partition_from_its_beginning_to_its_eof() -> None:
    reader = Reader([
        [Msg(WIDGETS, 0, key=b"a", value=b"1"), Msg(PATTERNS, 0, key=b"a", value=b"p1"),
         Msg(WIDGETS, 0, key=b"b", value=b"2")],
        [],  # nothing arrived within the wait: keep reading
        [eof(WIDGETS, 0), Msg(WIDGETS, 1, key=b"c", value=b"3"), Msg(PATTERNS, 0, key=b"a", value=None)],
        [eof(PATTERNS, 0), eof(WIDGETS, 1)],
    ])
    out = read(reader, [(WIDGETS, 1), (PATTERNS, 0), (WIDGETS, 0), (WIDGETS, 0)])
    assert out == [(WIDGETS, b"a", b"1"), (PATTERNS, b"a", b"p1"), (WIDGETS, b"b", b"2"),
                   (WIDGETS, b"c", b"3"), (PATTERNS, b"a", None)]
    assert sorted(reader.assigned) == [(PATTERNS, 0, OFFSET_BEGINNING), (WIDGETS, 0, OFFSET_BEGINNING),
                                       (WIDGETS, 1, OFFSET_BEGINNING)]
    assert reader.calls == ["assign", "consume", "consume", "consume", "consume", "unassign"]


def test_records_of_a_partition_after_its_eof_are_ignored() -> None:
    reader = Reader([
        [Msg(WIDGETS, 0, key=b"a", value=b"1"), eof(WIDGETS, 0), Msg(WIDGETS, 0, key=b"late", value=b"x"),
         Msg(WIDGETS, 1, key=b"b", value=b"2")],
        [Msg(WIDGETS, 0, key=b"later", value=b"y"), eof(WIDGETS, 1)],
    ])
    assert read(reader, [(WIDGETS, 0), (WIDGETS, 1)]) == [(WIDGETS, b"a", b"1"), (WIDGETS, b"b", b"2")]


def test_records_of_a_partition_not_asked_for_are_ignored() -> None:
    reader = Reader([[Msg(PATTERNS, 0, key=b"x", value=b"x"), Msg(WIDGETS, 0, key=b"a", value=b"1"),
                      eof(WIDGETS, 0)]])
    assert read(reader, [(WIDGETS, 0)]) == [(WIDGETS, b"a", b"1")]


def test_no_partitions_reads_nothing() -> None:
    reader = Reader([])
    assert read(reader, []) == []
    assert reader.calls == []


def test_a_non_fatal_error_is_waited_out() -> None:
    reader = Reader([
        [Msg(WIDGETS, 0, error=KafkaError(KafkaError._TRANSPORT, "broker down", retriable=True))],
        [Msg(WIDGETS, 0, key=b"a", value=b"1"), eof(WIDGETS, 0)],
    ])
    assert read(reader, [(WIDGETS, 0)]) == [(WIDGETS, b"a", b"1")]
    assert reader.calls[-1] == "unassign"


def test_a_stop_raises_stopped_and_unassigns() -> None:
    stop = threading.Event()
    reader = Reader([[Msg(WIDGETS, 0, key=b"a", value=b"1")], [eof(WIDGETS, 0)]], stop, stop_after=1)
    with pytest.raises(StoppedError):
        read(reader, [(WIDGETS, 0)], stop)
    assert reader.calls == ["assign", "consume", "unassign"]


def test_a_stop_already_set_reads_nothing() -> None:
    stop = threading.Event()
    stop.set()
    reader = Reader([[eof(WIDGETS, 0)]])
    with pytest.raises(StoppedError):
        read(reader, [(WIDGETS, 0)], stop)
    assert reader.calls == ["assign", "unassign"]


def test_a_fatal_error_raises_stage_failed_and_unassigns() -> None:
    reader = Reader([
        [Msg(WIDGETS, 0, key=b"a", value=b"1"),
         Msg(WIDGETS, 0, error=KafkaError(KafkaError._FATAL, "fenced reader", fatal=True)),
         eof(WIDGETS, 0)],
    ])
    with pytest.raises(StageFailedError, match="fenced reader"):
        read(reader, [(WIDGETS, 0)])
    assert reader.calls == ["assign", "consume", "unassign"]


def test_a_consume_that_raises_still_unassigns() -> None:
    class Failing(Reader):
        def consume(self, num_messages: int, timeout: float) -> list[Msg]:
            super().consume(num_messages, timeout)
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "gone", retriable=True))

    reader = Failing([[]])
    with pytest.raises(KafkaException):
        read(reader, [(WIDGETS, 0)])
    assert reader.calls == ["assign", "consume", "unassign"]
