"""Erase a user's or a session's telemetry everywhere agentwatch keeps it, then prove it is gone.

Order: find the sessions (ClickHouse, plus any the caller knows, e.g. the gateway's owners),
delete the ClickHouse rows (events, sessions, alerts, dead letters; mutations awaited through
system.mutations), delete the archive objects (recording, manifest, segments), then publish
tombstones for the compacted Kafka state (widget keys ``{session}/{widget}`` and the worker's
changelog keys) so no restarted gateway or worker rebuilds it. Every step is idempotent: a
second run finds nothing and deletes nothing. Raw topics (ingest, events, patterns, dlq) are not
rewritten; they age out by retention (docs/privacy.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consumers.archive.layout import RECORDINGS, SUFFIX, key_component, manifest_key, segment_prefix
from consumers.archive.manifest import read_manifest
from consumers.archive.targets import ArchiveTarget
from consumers.clickhouse.retention import Removal, Retention
from pipeline.errors import DecodeError, QueryError
from pipeline.privacy import USER_KEY
from pipeline.settings import RetentionSettings

SESSION_TABLES = ("telemetry_events", "sessions", "pattern_alerts", "dead_letters")
WIDGET_NAMES = ("session_progress", "agent_timeline", "file_heatmap", "error_log",
                "resource_usage", "network_trace", "cost", "session_summary")
"""The worker's widgets (processors/widgets/reducers.py): the keys of the compacted topic."""
STATE_TABLES = ("widget-state", "pattern-state")
"""The worker's changelogged tables (processors/tables.py), keyed by JSON-encoded session id."""


@dataclass(frozen=True)
class Subject:
    """What to erase: a user (all their sessions and rows) or one session."""

    user: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        if bool(self.user) == bool(self.session):
            raise QueryError("erase either a user or a session")

    def describe(self) -> str:
        return f"user:{self.user}" if self.user else f"session:{self.session}"


@dataclass
class ErasureReport:
    subject: str
    sessions: list[str] = field(default_factory=list)
    clickhouse: list[Removal] = field(default_factory=list)
    archive_objects: int = 0
    tombstones: int = 0
    remaining: dict[str, int] = field(default_factory=dict)
    """What the verification found afterwards, per place; all zeros when the erasure worked."""

    @property
    def verified(self) -> bool:
        return not any(self.remaining.values())

    def summary(self) -> dict[str, Any]:
        """Counts only: safe for logs and the audit trail (no erased content)."""
        rows: dict[str, int] = {}
        for r in self.clickhouse:
            rows[r.table] = rows.get(r.table, 0) + r.rows
        return {"subject": self.subject, "sessions": len(self.sessions), "clickhouse_rows": rows,
                "archive_objects": self.archive_objects, "tombstones": self.tombstones,
                "remaining": self.remaining, "verified": self.verified}


# -- ClickHouse ------------------------------------------------------------------------------


def user_sessions(conn: Any, database: str, user: str) -> list[str]:
    """Sessions with at least one event attributed to the user (a session is one user's)."""
    rows = conn.execute(
        f"SELECT DISTINCT session_id FROM {database}.telemetry_events "
        "WHERE visitParamExtractString(metadata, %(key)s) = %(user)s", {"key": USER_KEY, "user": user})
    return sorted(str(r[0]) for r in rows)


def remaining_rows(conn: Any, database: str, sessions: Sequence[str],
                   user: str | None) -> dict[str, int]:
    """The verification query: rows of these sessions (or of the user) still in each table."""
    existing = {r[0] for r in conn.execute(
        "SELECT name FROM system.tables WHERE database = %(db)s", {"db": database})}
    out: dict[str, int] = {}
    ids = tuple(sessions) or ("",)
    for table in SESSION_TABLES:
        if table not in existing:
            continue
        where = "session_id IN %(ids)s"
        params: dict[str, Any] = {"ids": ids}
        if table == "telemetry_events" and user:
            where += " OR visitParamExtractString(metadata, %(key)s) = %(user)s"
            params.update(key=USER_KEY, user=user)
        out[f"clickhouse.{table}"] = int(conn.execute(
            f"SELECT count() FROM {database}.{table} WHERE {where}", params)[0][0])
    return out


# -- archive ---------------------------------------------------------------------------------


def archive_keys(target: ArchiveTarget, session_id: str) -> list[str]:
    """Every object of a session: manifest, recording (from the manifest, else by name) and
    segments. Without a manifest the recordings are listed whole to find the session's name."""
    keys = [manifest_key(session_id), *target.list_keys(segment_prefix(session_id))]
    try:
        manifest = read_manifest(target, session_id)
    except DecodeError:
        manifest = None
    suffix = f"/{key_component(session_id)}{SUFFIX}"
    if manifest is not None:
        keys.append(manifest.key)
    else:
        keys += [k for k in target.list_keys(RECORDINGS) if k.endswith(suffix)]
    # Listing by the exact key is an existence check that does not fetch the object.
    return [k for k in dict.fromkeys(keys) if k in target.list_keys(k)]


def erase_archive(target: ArchiveTarget, sessions: Iterable[str]) -> tuple[int, dict[str, int]]:
    """Delete every object of the sessions; returns (objects deleted, what remains)."""
    deleted = 0
    for sid in sessions:
        keys = archive_keys(target, sid)
        # The manifest last: while it exists a retry can still find the recording through it.
        keys.sort(key=lambda k: k == manifest_key(sid))
        target.delete(keys)
        deleted += len(keys)
    remaining = sum(len(archive_keys(target, sid)) for sid in sessions)
    return deleted, {"archive.objects": remaining}


# -- Kafka tombstones ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tombstone:
    topic: str
    partition: int
    key: bytes


def tombstones(sessions: Iterable[str], widgets_topic: str, changelogs: Sequence[str],
               partitions: Callable[[str], int]) -> list[Tombstone]:
    """Null-value records for every compacted key of the sessions, on every partition.

    Every partition rather than the one the key lives on: then this module needs no copy of the
    worker's partitioning, and a tombstone where the key never was costs one small record."""
    out: list[Tombstone] = []
    for sid in sessions:
        widget_keys = [f"{sid}/{w}".encode() for w in WIDGET_NAMES]
        for p in range(partitions(widgets_topic)):
            out += [Tombstone(widgets_topic, p, k) for k in widget_keys]
        state_key = json.dumps(sid).encode()
        for topic in changelogs:
            out += [Tombstone(topic, p, state_key) for p in range(partitions(topic))]
    return out


def changelog_topics(app_id: str) -> list[str]:
    return [f"{app_id}-{table}-changelog" for table in STATE_TABLES]


class KafkaTombstoner:
    """Publishes tombstones with an idempotent acks=all producer and waits for every ack."""

    def __init__(self, client_config: dict[str, Any]) -> None:
        self._config = client_config

    def partitions(self, topic: str) -> int:
        from confluent_kafka.admin import AdminClient

        meta = AdminClient(self._config).list_topics(topic, timeout=10)
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return 0  # no such topic: nothing of the session can be in it
        return len(info.partitions)

    def send(self, records: Sequence[Tombstone], timeout_s: float = 30.0) -> int:
        from confluent_kafka import KafkaException, Producer

        from pipeline.errors import TransientError

        if not records:
            return 0
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        producer = Producer({**self._config, "enable.idempotence": True, "acks": "all"})
        try:
            for r in records:
                producer.produce(r.topic, key=r.key, value=None, partition=r.partition,
                                 on_delivery=on_delivery)
                producer.poll(0)
        except KafkaException as exc:
            raise TransientError(f"cannot publish tombstones: {exc}") from exc
        left = producer.flush(timeout_s)
        if left or errors:
            raise TransientError(f"tombstones not acknowledged: {left} pending, errors {errors[:3]}")
        return len(records)


# -- the whole erasure -----------------------------------------------------------------------


@dataclass
class Eraser:
    """One erasure run over the configured stores; any of them may be absent (None)."""

    conn: Any
    database: str
    target: ArchiveTarget | None
    tombstoner: KafkaTombstoner | None
    widgets_topic: str
    changelogs: Sequence[str]
    mutation_timeout_s: float = 300.0

    def erase(self, subject: Subject, known_sessions: Iterable[str] = ()) -> ErasureReport:
        report = ErasureReport(subject.describe())
        sessions = set(known_sessions)
        if subject.session:
            sessions.add(subject.session)
        if subject.user and self.conn is not None:
            sessions |= set(user_sessions(self.conn, self.database, subject.user))
        report.sessions = sorted(sessions)
        if self.conn is not None:
            retention = Retention(self.conn, self.database,
                                  RetentionSettings(mutation_timeout_s=self.mutation_timeout_s))
            report.clickhouse = retention.delete_sessions(report.sessions)
            if subject.user:
                report.clickhouse += [r for r in retention.delete_user(subject.user)
                                      if r.rows]
        if self.target is not None:
            report.archive_objects, remaining = erase_archive(self.target, report.sessions)
            report.remaining.update(remaining)
        if self.tombstoner is not None and report.sessions:
            counts: dict[str, int] = {}

            def partitions(topic: str) -> int:
                if topic not in counts:
                    counts[topic] = self.tombstoner.partitions(topic)  # type: ignore[union-attr]
                return counts[topic]

            records = tombstones(report.sessions, self.widgets_topic, self.changelogs, partitions)
            report.tombstones = self.tombstoner.send(records)
        if self.conn is not None:
            report.remaining.update(remaining_rows(self.conn, self.database, report.sessions,
                                                   subject.user))
        return report
