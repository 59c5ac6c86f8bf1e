"""``ClickHouseSink``: a ``pipeline.sinks.Sink`` that inserts batches with exactly-once effect.

Exactly-once by staged offsets. Every row carries its Kafka (topic, partition, offset); a
materialized view records ``max(offset) + 1`` per partition in ``sink_offsets`` as part of the
same INSERT, so "rows stored" and "offset recorded" cannot disagree when the sink is killed.
Before writing, records below the stored offset are dropped: a replay after a crash between
insert and Kafka commit, a retry after an insert that timed out but was applied, or a retry after
part of a batch went in all become no-ops. This keeps counts exact without FINAL and keeps the
materialized rollups exact too (a replacing engine would fold duplicates in the base table only,
never in the rollups fed from each insert).

Rows ClickHouse refuses are found by bisection (halves inserted in offset order, so the stored
offset stays a true watermark) and dead-lettered one by one; a dependency problem (server down,
too many parts, missing table) is raised as ``TransientError``/``BackpressureError`` and the
consume loop retries the same batch later.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from consumers.clickhouse.rows import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    PATTERN_ALERT_COLUMNS,
    Row,
    dead_letter_row,
    event_row,
    pattern_alert_row,
)
from consumers.clickhouse.sessions import SessionFolder
from pipeline.errors import BackpressureError, ErrorKind, ItemError, TransientError
from pipeline.sinks import Batch, Record, RejectFn, TopicPartition

log = logging.getLogger(__name__)

RowMapper = Callable[[Mapping[str, Any], str, int, int], Row]

# ClickHouse error codes that mean "this data", not "this server": the rows are dead-lettered.
_DATA_ERROR_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
})
# The server asks us to slow down: wait and retry, do not hammer it.
_BACKPRESSURE_CODES = frozenset({
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    241,  # MEMORY_LIMIT_EXCEEDED
    252,  # TOO_MANY_PARTS
})
_MAX_DAYS_PER_INSERT = 45
"""Current servers refuse an insert touching > 100 partitions (days, in the server's time zone);
chunks are cut in offset order well below that."""


@dataclass(frozen=True)
class TableSpec:
    """A target table: its name (also its key in ``sink_offsets``), insert columns, row mapper."""

    table: str
    columns: tuple[str, ...]
    to_row: RowMapper
    day_of: Callable[[Row], int]


EVENTS = TableSpec("telemetry_events", EVENT_COLUMNS, event_row, lambda r: int(r[0]) // 86_400)
PATTERN_ALERTS = TableSpec("pattern_alerts", PATTERN_ALERT_COLUMNS, pattern_alert_row,
                           lambda r: int(r[7]) // 86_400)
DEAD_LETTERS = TableSpec("dead_letters", DEAD_LETTER_COLUMNS, dead_letter_row,
                         lambda r: int(r[0]) // 86_400)


class _RejectedError(Exception):
    """ClickHouse refused this data (as opposed to being unavailable)."""


def classify(exc: BaseException) -> BaseException:
    """Map a clickhouse-driver failure to ``_RejectedError`` (data), ``BackpressureError``,
    or ``TransientError`` (everything else: never drop data because of the server's state)."""
    from clickhouse_driver.errors import ServerException, TypeMismatchError

    if isinstance(exc, (TypeMismatchError, struct.error, TypeError, ValueError, OverflowError,
                        UnicodeError)):
        return _RejectedError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ServerException):
        code = getattr(exc, "code", None)
        # Display only: the server appends a long stack trace to its message.
        text = f"ClickHouse code {code}: {str(exc.message).partition(' Stack trace')[0][:500]}"
        if code in _DATA_ERROR_CODES:
            return _RejectedError(text)
        if code in _BACKPRESSURE_CODES:
            return BackpressureError(text, retry_after=5.0)
        return TransientError(text)
    return TransientError(f"ClickHouse unavailable: {type(exc).__name__}: {exc}")


class ClickHouseSinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.inserted = Counter("agentwatch_clickhouse_rows_inserted_total",
                                "Rows inserted into ClickHouse", ["table"], registry=registry)
        self.skipped = Counter(
            "agentwatch_clickhouse_rows_already_stored_total",
            "Records skipped because sink_offsets shows them stored (replays, retries)",
            ["table"], registry=registry)
        self.rejected = Counter("agentwatch_clickhouse_rows_rejected_total",
                                "Rows dead-lettered because ClickHouse or the mapping refused them",
                                ["table"], registry=registry)
        self.inserts = Counter("agentwatch_clickhouse_inserts_total", "INSERT statements sent",
                               ["table"], registry=registry)


class ClickHouseSink:
    """Writes one table; give it a client factory (clickhouse-driver ``Client``) and a database."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        database: str,
        spec: TableSpec,
        metrics: ClickHouseSinkMetrics,
        *,
        sessions: SessionFolder | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._client: Any = None
        self._db = database
        self._spec = spec
        self._sessions = sessions
        self._stored: dict[TopicPartition, int] = {}
        self._rejected: set[tuple[TopicPartition, int]] = set()
        self._insert_sql = (f"INSERT INTO {database}.{spec.table} ({', '.join(spec.columns)}) "
                            "VALUES")
        self._m_inserted = metrics.inserted.labels(table=spec.table)
        self._m_skipped = metrics.skipped.labels(table=spec.table)
        self._m_rejected = metrics.rejected.labels(table=spec.table)
        self._m_inserts = metrics.inserts.labels(table=spec.table)

    # -- Sink --------------------------------------------------------------------------------

    def write(self, batch: Batch[Any], reject: RejectFn) -> None:
        try:
            self._write(batch, reject)
        except (TransientError, ItemError):
            self._reset_client()
            raise
        except Exception as exc:
            self._reset_client()
            classified = classify(exc)
            if isinstance(classified, _RejectedError):  # outside an insert: not a row's fault
                raise TransientError(str(classified)) from exc
            raise classified from exc
        # A batch done is a batch whose rejected offsets are below the stored watermark or
        # committed: the loop never hands them to us again.
        self._rejected.clear()

    def revoke(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            self._stored.pop(tp, None)
        self._rejected.clear()

    def close(self) -> None:
        self._reset_client()

    # -- internals ---------------------------------------------------------------------------

    def _conn(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _reset_client(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception as exc:  # a broken connection may fail to close; it is dropped anyway
                log.debug("disconnect failed", extra={"error": str(exc)})
            self._client = None

    def _write(self, batch: Batch[Any], reject: RejectFn) -> None:
        stored = self._stored_offsets(list(batch.partitions), refresh=batch.attempt > 1)
        records: list[Record[Any]] = []
        rows: list[Row] = []
        skipped = 0
        for tp, recs in batch.partitions.items():
            floor = stored.get(tp, 0)
            for rec in recs:
                if rec.offset < floor:
                    skipped += 1
                    continue
                if (tp, rec.offset) in self._rejected:
                    continue
                try:
                    row = self._spec.to_row(rec.value, rec.topic, rec.partition, rec.offset)
                except ItemError as exc:
                    self._reject(rec, exc, reject)
                    continue
                records.append(rec)
                rows.append(row)
        if skipped:
            self._m_skipped.inc(skipped)
            log.info("skipped records already stored in ClickHouse",
                     extra={"table": self._spec.table, "records": skipped})
        if not rows:
            return
        if self._sessions is not None:
            self._sessions.apply(self._conn(), records)
        for lo, hi in self._day_chunks(rows):
            self._insert_bisect(records[lo:hi], rows[lo:hi], reject)

    def _reject(self, rec: Record[Any], exc: ItemError, reject: RejectFn) -> None:
        reject(rec, exc)
        self._rejected.add((rec.tp, rec.offset))
        self._m_rejected.inc()

    def _day_chunks(self, rows: list[Row]) -> list[tuple[int, int]]:
        chunks: list[tuple[int, int]] = []
        start, days = 0, set[int]()
        for i, row in enumerate(rows):
            day = self._spec.day_of(row)
            if day not in days and len(days) >= _MAX_DAYS_PER_INSERT:
                chunks.append((start, i))
                start, days = i, set[int]()
            days.add(day)
        chunks.append((start, len(rows)))
        return chunks

    def _insert_bisect(self, records: list[Record[Any]], rows: list[Row], reject: RejectFn) -> None:
        try:
            self._insert(rows)
            return
        except _RejectedError as exc:
            if len(rows) == 1:
                self._reject(records[0], ItemError(f"ClickHouse refused the row: {exc}",
                                                   kind=ErrorKind.SINK_REJECTED), reject)
                return
        mid = len(rows) // 2
        # Lower offsets first: the stored watermark never jumps over a row not yet handled.
        self._insert_bisect(records[:mid], rows[:mid], reject)
        self._insert_bisect(records[mid:], rows[mid:], reject)

    def _insert(self, rows: list[Row]) -> None:
        # Tuples are enough: the driver copies what it converts (measured ~2x cheaper).
        columns = list(zip(*rows, strict=True))
        try:
            self._conn().execute(self._insert_sql, columns, columnar=True)
        except Exception as exc:
            classified = classify(exc)
            if isinstance(classified, _RejectedError):
                raise classified from exc
            self._reset_client()
            raise classified from exc
        self._m_inserts.inc()
        self._m_inserted.inc(len(rows))
        # Rows of one partition are in ascending offset order: the last one is the highest.
        last = {(row[-3], row[-2]): row[-1] for row in rows}
        for (topic, partition), offset in last.items():
            tp = TopicPartition(topic, partition)
            self._stored[tp] = max(self._stored.get(tp, 0), offset + 1)

    def _stored_offsets(self, partitions: list[TopicPartition], *,
                        refresh: bool) -> Mapping[TopicPartition, int]:
        """The stored watermark per partition, read once per assignment and again after any
        failure (an insert that timed out may still have been applied)."""
        missing = partitions if refresh else [tp for tp in partitions if tp not in self._stored]
        if missing:
            topics = sorted({tp.topic for tp in missing})
            result = self._conn().execute(
                f"SELECT kafka_topic, kafka_partition, max(next_offset) FROM {self._db}.sink_offsets "
                "WHERE target = %(target)s AND kafka_topic IN %(topics)s "
                "GROUP BY kafka_topic, kafka_partition",
                {"target": self._spec.table, "topics": tuple(topics)},
            )
            found = {TopicPartition(str(t), int(p)): int(o) for t, p, o in result}
            for tp in missing:
                self._stored[tp] = max(found.get(tp, 0), self._stored.get(tp, 0))
        return self._stored
