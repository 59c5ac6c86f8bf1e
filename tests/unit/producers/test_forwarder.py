"""The forwarder against an in-memory producer double: order, bounds, retries, rejects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka_double import FakeError, FakeProducer

from producers.forwarder import Forwarder
from producers.spool import Spool


class Hooks:
    def __init__(self) -> None:
        self.ok = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def delivered(self, counts: Mapping[bytes, int], latencies_s: Sequence[float]) -> None:
        with self.lock:
            self.ok += sum(counts.values())
            assert len(latencies_s) == sum(counts.values())

    def delivery_error(self, reason: str) -> None:
        with self.lock:
            self.errors.append(reason)


_OPEN: list[tuple[Spool, Forwarder]] = []


@pytest.fixture(autouse=True)
def _close_everything() -> Iterator[None]:
    yield
    while _OPEN:
        spool, forwarder = _OPEN.pop()
        if forwarder.alive():
            forwarder.stop(1)
        spool.close()


def make(tmp_path: Path, producer: FakeProducer, max_in_flight: int = 100
         ) -> tuple[Spool, Forwarder, Hooks, list[Callable[[Any], None]]]:
    spool = Spool(tmp_path / "spool", max_bytes=50_000_000)
    hooks = Hooks()
    error_cbs: list[Callable[[Any], None]] = []

    def factory(error_cb: Callable[[Any], None]) -> FakeProducer:
        error_cbs.append(error_cb)
        return producer

    forwarder = Forwarder(spool, "topic", factory, max_in_flight=max_in_flight, hooks=hooks)
    _OPEN.append((spool, forwarder))
    return spool, forwarder, hooks, error_cbs


def values(n: int, start: int = 0) -> list[tuple[bytes, bytes, bytes]]:
    return [(b"k", b"src\x1ftype", f"{i:05d}".encode()) for i in range(start, start + n)]


def test_delivers_everything_in_order_and_empties_the_spool(tmp_path: Path) -> None:
    producer = FakeProducer()
    spool, fwd, hooks, _ = make(tmp_path, producer)
    fwd.start()
    for i in range(10):
        spool.append(values(100, i * 100))
        fwd.wake()
    assert fwd.wait_delivered(10)
    fwd.stop()
    assert producer.delivered == [f"{i:05d}".encode() for i in range(1000)]
    assert hooks.ok == 1000 and spool.backlog() == 0


def test_in_flight_is_bounded_while_kafka_is_away(tmp_path: Path) -> None:
    producer = FakeProducer(down=True)
    spool, fwd, _, _ = make(tmp_path, producer, max_in_flight=50)
    fwd.start()
    spool.append(values(500))
    fwd.wake()
    time.sleep(0.3)
    assert producer.most_queued <= 50
    assert spool.backlog() == 500
    producer.down = False
    assert fwd.wait_delivered(10)
    fwd.stop()
    assert producer.delivered == [f"{i:05d}".encode() for i in range(500)]


def test_retriable_error_rewinds_and_resends_from_the_first_undelivered(tmp_path: Path) -> None:
    producer = FakeProducer(fail_next=[FakeError("_MSG_TIMED_OUT")])
    spool, fwd, hooks, _ = make(tmp_path, producer)
    spool.append(values(20))
    fwd.start()
    assert fwd.wait_delivered(10)
    fwd.stop()
    # Nothing lost: the resend replays everything from the failed record on, in order (records
    # acknowledged after the failed one come twice, with the same bytes, hence the same event_id).
    assert set(producer.delivered) == {f"{i:05d}".encode() for i in range(20)}
    assert producer.delivered[-20:] == [f"{i:05d}".encode() for i in range(20)]
    assert hooks.errors == ["msg_timed_out"]


def test_permanent_error_keeps_the_record_aside_and_goes_on(tmp_path: Path) -> None:
    producer = FakeProducer(fail_next=[FakeError("MSG_SIZE_TOO_LARGE")])
    spool, fwd, hooks, _ = make(tmp_path, producer)
    spool.append(values(5))
    fwd.start()
    assert fwd.wait_delivered(10)
    fwd.stop()
    assert producer.delivered == [f"{i:05d}".encode() for i in range(1, 5)]
    rejected = list((tmp_path / "spool" / "rejected").iterdir())
    assert len(rejected) == 1 and b"00000" in rejected[0].read_bytes()
    assert hooks.errors == ["msg_size_too_large"]


def test_fatal_producer_error_recreates_the_producer_and_resends(tmp_path: Path) -> None:
    producer = FakeProducer(down=True)
    spool, fwd, hooks, error_cbs = make(tmp_path, producer)
    spool.append(values(10))
    fwd.start()
    time.sleep(0.2)
    error_cbs[0](FakeError("_FENCED", is_fatal=True))
    producer.queue.clear()  # the old producer's queue dies with it
    producer.down = False
    assert fwd.wait_delivered(10)
    fwd.stop()
    assert len(error_cbs) == 2
    assert producer.delivered == [f"{i:05d}".encode() for i in range(10)]
    assert "fatal" in hooks.errors


def test_stop_persists_the_cursor_so_a_restart_sends_only_the_rest(tmp_path: Path) -> None:
    producer = FakeProducer()
    spool, fwd, _, _ = make(tmp_path, producer)
    spool.append(values(30))
    fwd.start()
    assert fwd.wait_delivered(10)
    fwd.stop()
    spool.append(values(5, 30))
    spool.close()

    producer2 = FakeProducer()
    spool2, fwd2, _, _ = make(tmp_path, producer2)
    fwd2.start()
    assert fwd2.wait_delivered(10)
    fwd2.stop()
    assert producer2.delivered == [f"{i:05d}".encode() for i in range(30, 35)]
    spool2.close()
