"""Export everything agentwatch holds about a user: a stream of records plus a manifest.

Records come from ClickHouse (which holds every event the archive holds, already redacted):
the user's consent row, their sessions, events, pattern alerts, dead letters, and the audit
records about them (their own accesses and every access to their sessions). Rows are fetched
with ``execute_iter`` (block by block), so an export of any size streams in bounded memory.

Formats: JSON Lines (``{"record_type": ..., "data": {...}}`` per line) or CSV (``record_type,
session_id, timestamp_us, data`` with the row as JSON in ``data``). The manifest counts the
records per type and carries the SHA-256 of the records stream; in a single stream (HTTP) it is
the last record (``record_type`` ``manifest``), with ``agentwatch export --out DIR`` it is
``manifest.json`` next to ``export.jsonl``/``export.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from consumers.clickhouse.output import to_jsonable
from consumers.privacy.erase import Subject, user_sessions
from pipeline.privacy import TABLE as PRIVACY_TABLE
from pipeline.privacy import USER_KEY

Format = Literal["json", "csv"]
FORMAT_VERSION = 1
CSV_COLUMNS = ("record_type", "session_id", "timestamp_us", "data")
_BLOCK = {"max_block_size": 10_000}


@dataclass(frozen=True)
class _Source:
    record_type: str
    table: str
    where: str
    final: bool = False
    time_column: str = ""
    order: str = ""


def _sources(subject: Subject) -> list[_Source]:
    sessions = "session_id IN %(ids)s"
    events_where = sessions + (" OR visitParamExtractString(metadata, %(key)s) = %(user)s"
                               if subject.user else "")
    audit_where = sessions + (" OR user_id = %(user)s" if subject.user else "")
    out = []
    if subject.user:
        out.append(_Source("privacy_setting", PRIVACY_TABLE, "user_id = %(user)s", False,
                           "updated_us", "updated_us"))
    out += [
        _Source("session", "sessions", sessions, True, "started_us", "session_id"),
        # One row per event even if a producer re-sent it (the replacing engine folds late).
        _Source("event", "telemetry_events", events_where, False, "ts_us",
                "session_id, ts_us, event_id LIMIT 1 BY event_id"),
        _Source("alert", "pattern_alerts", sessions, True, "window_start_us",
                "session_id, window_start_us"),
        _Source("dead_letter", "dead_letters", sessions, False, "first_seen_us", "first_seen_us"),
        _Source("audit", "audit_log", audit_where, False, "at_us", "at_us"),
    ]
    return out


@dataclass
class ExportManifest:
    subject: str
    format: str
    sessions: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    sha256: str = ""
    """Of the records stream (the file, or the stream without its last manifest line)."""
    generated_at_us: int = 0
    version: int = FORMAT_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "format": self.format, "sessions": self.sessions,
                "counts": self.counts, "records": sum(self.counts.values()),
                "sha256": self.sha256, "generated_at_us": self.generated_at_us,
                "version": self.version}


def records(conn: Any, database: str, subject: Subject,
            sessions: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(record_type, row as a dict) for everything about the subject, table by table."""
    existing = {r[0] for r in conn.execute(
        "SELECT name FROM system.tables WHERE database = %(db)s", {"db": database})}
    params = {"ids": tuple(sessions) or ("",), "user": subject.user or "", "key": USER_KEY}
    for src in _sources(subject):
        if src.table not in existing:
            continue
        final = " FINAL" if src.final else ""
        sql = (f"SELECT * FROM {database}.{src.table}{final} WHERE {src.where} "
               f"ORDER BY {src.order}")
        rows = conn.execute_iter(sql, params, with_column_types=True, settings=_BLOCK)
        columns: list[str] | None = None
        for item in rows:
            if columns is None:
                columns = [c[0] for c in item]
                continue
            yield src.record_type, dict(zip(columns, item, strict=True))


def _json(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), default=to_jsonable, ensure_ascii=False)


def _timestamp(row: dict[str, Any]) -> Any:
    for key in ("ts_us", "started_us", "window_start_us", "first_seen_us", "at_us", "updated_us"):
        if key in row:
            return row[key]
    return ""


class ExportWriter:
    """Renders records to bytes chunks in one format, hashing and counting as it goes."""

    def __init__(self, fmt: Format, manifest: ExportManifest) -> None:
        if fmt not in ("json", "csv"):
            raise ValueError("format is json or csv")
        self.fmt = fmt
        self.manifest = manifest
        self._hash = hashlib.sha256()

    def header(self) -> bytes:
        return self._emit(self._csv_line(CSV_COLUMNS)) if self.fmt == "csv" else b""

    def record(self, record_type: str, row: dict[str, Any]) -> bytes:
        self.manifest.counts[record_type] = self.manifest.counts.get(record_type, 0) + 1
        return self._emit(self._render(record_type, row))

    def finish(self) -> dict[str, Any]:
        self.manifest.sha256 = self._hash.hexdigest()
        return self.manifest.as_dict()

    def trailer(self) -> bytes:
        """The manifest as the stream's last record (not part of the hash)."""
        return self._render("manifest", self.finish())

    def _emit(self, data: bytes) -> bytes:
        self._hash.update(data)
        return data

    def _render(self, record_type: str, row: dict[str, Any]) -> bytes:
        if self.fmt == "json":
            return (_json({"record_type": record_type, "data": row}) + "\n").encode()
        return self._csv_line((record_type, str(row.get("session_id", "")),
                               str(_timestamp(row)), _json(row)))

    @staticmethod
    def _csv_line(values: Sequence[str]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue().encode()


def stream(conn: Any, database: str, subject: Subject, fmt: Format,
           known_sessions: Sequence[str] = ()) -> Iterator[bytes]:
    """The whole export as chunks: header, records, manifest trailer. Blocking (ClickHouse)."""
    sessions = set(known_sessions)
    if subject.session:
        sessions.add(subject.session)
    if subject.user:
        sessions |= set(user_sessions(conn, database, subject.user))
    manifest = ExportManifest(subject.describe(), fmt, sorted(sessions),
                              generated_at_us=time.time_ns() // 1000)
    writer = ExportWriter(fmt, manifest)
    yield writer.header()
    for record_type, row in records(conn, database, subject, manifest.sessions):
        yield writer.record(record_type, row)
    yield writer.trailer()
