"""ClickHouseSink against a fake clickhouse-driver client: staged offsets, bisection, errors."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_driver.errors import NetworkError, ServerException
from prometheus_client import CollectorRegistry

from consumers.clickhouse.rows import EVENT_COLUMNS
from consumers.clickhouse.sessions import SessionFolder
from consumers.clickhouse.writer import EVENTS, ClickHouseSink, ClickHouseSinkMetrics
from pipeline import model
from pipeline.errors import BackpressureError, ErrorKind, ItemError, TransientError
from pipeline.sinks import Batch, Record, TopicPartition

TP = TopicPartition("events", 0)
SESSION = EVENT_COLUMNS.index("session_id")


class FakeClient:
    """Stores inserted rows and emulates the sink_offsets view; can refuse or fail inserts."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.sessions: list[tuple[Any, ...]] = []
        self.fail_inserts: list[BaseException] = []
        self.apply_then_fail = False
        self.inserts = 0
        self.disconnects = 0

    def execute(self, sql: str, params: Any = None, columnar: bool = False) -> list[Any]:
        if sql.startswith("SELECT kafka_topic"):
            return [(t, p, o) for (t, p), o in self.offsets.items() if t in params["topics"]]
        if "FROM db.sessions" in sql:
            return []
        if sql.startswith("INSERT INTO db.sessions"):
            self.sessions.extend(zip(*params, strict=True))
            return []
        assert sql.startswith("INSERT INTO db.telemetry_events")
        rows = list(zip(*params, strict=True))
        if self.fail_inserts:
            raise self.fail_inserts.pop(0)
        if any(r[SESSION] == "poison" for r in rows):
            raise ServerException("Cannot parse", code=6)
        self.inserts += 1
        self.rows.extend(rows)
        for r in rows:
            key = (r[-3], r[-2])
            self.offsets[key] = max(self.offsets.get(key, 0), r[-1] + 1)
        if self.apply_then_fail:
            self.apply_then_fail = False
            raise NetworkError("timed out waiting for the server's answer")
        return []

    def disconnect(self) -> None:
        self.disconnects += 1


def records(sessions: list[str], start: int = 0) -> list[Record[Any]]:
    out = []
    for i, sid in enumerate(sessions):
        event = model.new_event("file.read", sid, {"path": "x"})
        out.append(Record("events", 0, start + i, sid.encode(), event, 0, b"raw"))
    return out


def make(fake: FakeClient, sessions: bool = False) -> ClickHouseSink:
    return ClickHouseSink(lambda: fake, "db", EVENTS, ClickHouseSinkMetrics(CollectorRegistry()),
                          sessions=SessionFolder("db") if sessions else None)


def offsets_of(fake: FakeClient) -> list[int]:
    return sorted(r[-1] for r in fake.rows)


def test_a_batch_is_inserted_once_and_replays_are_skipped() -> None:
    fake = FakeClient()
    recs = records(["a", "b", "c"])
    make(fake).write(Batch({TP: recs}), lambda r, e: pytest.fail("no rejection expected"))
    # A new process (empty cache) handed the same records after a crash before the commit:
    make(fake).write(Batch({TP: recs + records(["d"], start=3)}), lambda r, e: None)
    assert offsets_of(fake) == [0, 1, 2, 3]


def test_an_insert_applied_before_a_timeout_is_not_repeated_on_retry() -> None:
    fake = FakeClient()
    fake.apply_then_fail = True
    sink = make(fake)
    recs = records(["a", "b"])
    with pytest.raises(TransientError):
        sink.write(Batch({TP: recs}), lambda r, e: None)
    sink.write(Batch({TP: recs}, attempt=2), lambda r, e: None)
    assert offsets_of(fake) == [0, 1]
    assert fake.disconnects >= 1


def test_refused_rows_are_isolated_by_bisection_and_dead_lettered() -> None:
    fake = FakeClient()
    rejected: list[tuple[int, ItemError]] = []
    recs = records(["a", "poison", "b", "c", "poison", "d", "e"])
    make(fake).write(Batch({TP: recs}), lambda r, e: rejected.append((r.offset, e)))
    assert offsets_of(fake) == [0, 2, 3, 5, 6]
    assert [o for o, _ in rejected] == [1, 4]
    assert all(e.kind == ErrorKind.SINK_REJECTED for _, e in rejected)
    assert "code 6" in str(rejected[0][1])


def test_rows_that_cannot_be_mapped_are_dead_lettered_once_across_retries() -> None:
    fake = FakeClient()
    bad = records(["x"])[0]
    bad_event = dict(bad.value)
    bad_event["timestamp"] = -1
    bad = Record("events", 0, 0, None, bad_event, 0, b"raw")
    recs = [bad, *records(["a"], start=1)]
    fake.fail_inserts.append(NetworkError("down"))
    sink = make(fake)
    rejected: list[int] = []
    with pytest.raises(TransientError):
        sink.write(Batch({TP: recs}), lambda r, e: rejected.append(r.offset))
    sink.write(Batch({TP: recs}, attempt=2), lambda r, e: rejected.append(r.offset))
    assert rejected == [0]
    assert offsets_of(fake) == [1]


@pytest.mark.parametrize(("error", "expected"), [
    (ServerException("Too many parts", code=252), BackpressureError),
    (ServerException("Memory limit", code=241), BackpressureError),
    (ServerException("Table doesn't exist", code=60), TransientError),
    (ServerException("Readonly", code=164), TransientError),
    (NetworkError("connection refused"), TransientError),
    (ConnectionRefusedError(111, "refused"), TransientError),
    (EOFError("Unexpected EOF while reading bytes"), TransientError),
])
def test_server_trouble_is_retried_not_dead_lettered(error: BaseException,
                                                     expected: type[Exception]) -> None:
    fake = FakeClient()
    fake.fail_inserts.append(error)
    rejected: list[int] = []
    with pytest.raises(expected):
        make(fake).write(Batch({TP: records(["a"])}), lambda r, e: rejected.append(r.offset))
    assert rejected == [] and fake.rows == []


def test_partitions_are_refreshed_after_a_revoke() -> None:
    fake = FakeClient()
    sink = make(fake)
    sink.write(Batch({TP: records(["a"])}), lambda r, e: None)
    # Another owner wrote offsets 1..2 meanwhile; after the revoke we must read them again.
    sink.revoke([TP])
    fake.offsets[("events", 0)] = 3
    sink.write(Batch({TP: records(["b", "c", "d"], start=1)}), lambda r, e: None)
    assert offsets_of(fake) == [0, 3]


def test_sessions_are_folded_before_the_events_are_inserted() -> None:
    fake = FakeClient()
    make(fake, sessions=True).write(Batch({TP: records(["a", "a", "b"])}), lambda r, e: None)
    by_id = {row[0]: row for row in fake.sessions}
    assert set(by_id) == {"a", "b"}
    assert by_id["a"][14] == 2  # events
