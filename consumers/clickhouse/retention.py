"""Retention and deletion in ClickHouse: drop whole expired day partitions, delete expired rows.

ClickHouse 18.16 has no TTL, so `agentwatch retention apply` does it: a day partition whose rows
have all expired is dropped (cheap, immediate); in a partition that still holds rows to keep,
only the expired rows are removed with an ``ALTER TABLE ... DELETE`` mutation, awaited by polling
system.mutations (no mutations_sync on 18.16). Rows expire by severity, unless a per-user
override names the event's user. ``delete_sessions``/``delete_user`` are the building blocks of
the privacy issue's erasure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import QueryError, TransientError
from pipeline.settings import RetentionSettings

DAY_S = 86_400
SEVERITIES = ("debug", "info", "warning", "error", "critical")
ROLLUP_TABLES = ("events_hourly", "build_durations_hourly", "test_durations_hourly",
                 "command_durations_hourly", "llm_usage_hourly")


@dataclass(frozen=True)
class Removal:
    table: str
    action: str
    """drop_partition | delete_rows"""
    target: str
    """The partition id, or what the deleted rows had in common."""
    rows: int


@dataclass(frozen=True)
class _Expiry:
    """A boolean SQL expression over one table's rows and its parameters."""

    sql: str
    params: dict[str, Any]


def _severity_days(cfg: RetentionSettings) -> list[int]:
    return [cfg.debug_days, cfg.info_days, cfg.warning_days, cfg.error_days, cfg.critical_days]


def _days_expr(cfg: RetentionSettings, *, with_users: bool) -> tuple[str, dict[str, Any]]:
    """SQL for the retention days of a row (0 = forever), from its severity and user."""
    params: dict[str, Any] = {
        "sev_names": list(SEVERITIES),
        "sev_days": _severity_days(cfg),
        "info_days": cfg.info_days,
    }
    days = "transform(severity, %(sev_names)s, %(sev_days)s, toInt64(%(info_days)s))"
    if with_users and cfg.user_days:
        params.update(user_key=cfg.user_key, user_names=list(cfg.user_days),
                      user_day_values=list(cfg.user_days.values()))
        user = "visitParamExtractString(metadata, %(user_key)s)"
        days = (f"if(has(%(user_names)s, {user}), "
                f"transform({user}, %(user_names)s, %(user_day_values)s, toInt64(0)), {days})")
    return f"toInt64({days})", params


def events_expiry(cfg: RetentionSettings, now_s: int) -> _Expiry:
    days, params = _days_expr(cfg, with_users=True)
    params["now"] = now_s
    return _Expiry(f"({days} > 0 AND timestamp < toDateTime(%(now)s - {days} * {DAY_S}))", params)


def alerts_expiry(cfg: RetentionSettings, now_s: int) -> _Expiry:
    days, params = _days_expr(cfg, with_users=False)
    params["now"] = now_s
    return _Expiry(f"({days} > 0 AND window_start < toDateTime(%(now)s - {days} * {DAY_S}))",
                   params)


def _fixed_expiry(column: str, days: int, now_s: int) -> _Expiry | None:
    if days <= 0:
        return None
    return _Expiry(f"{column} < toDateTime(%(now)s - {days * DAY_S})", {"now": now_s})


def _shortest_finite(values: Iterable[int]) -> int | None:
    finite = [v for v in values if v > 0]
    return min(finite) if finite else None


@dataclass(frozen=True)
class _TablePolicy:
    table: str
    partition_expr: str
    """The table's PARTITION BY expression (from the migrations)."""
    expiry: _Expiry
    min_days: int
    """No row younger than this can have expired: older partitions only are examined."""
    delete_rows: bool
    """False: whole partitions only (rows of a partly expired partition wait for the rest)."""


class Retention:
    """Plans and applies retention for one database; ``now_s`` is fixed per run (testable)."""

    def __init__(self, conn: Any, database: str, cfg: RetentionSettings, *, now_s: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.conn = conn
        self.db = database
        self.cfg = cfg
        self.now_s = int(time.time()) if now_s is None else now_s
        self._sleep = sleep

    # -- policies -------------------------------------------------------------------------
    def _policies(self) -> list[_TablePolicy]:
        cfg, now = self.cfg, self.now_s
        out: list[_TablePolicy] = []
        event_days = _shortest_finite([*_severity_days(cfg), *cfg.user_days.values()])
        if event_days is not None:
            out.append(_TablePolicy("telemetry_events", "toYYYYMMDD(timestamp)",
                                    events_expiry(cfg, now), event_days, True))
        alert_days = _shortest_finite(_severity_days(cfg))
        if alert_days is not None:
            out.append(_TablePolicy("pattern_alerts", "toYYYYMMDD(window_start)",
                                    alerts_expiry(cfg, now), alert_days, True))
        dead = _fixed_expiry("first_seen", cfg.dead_letter_days, now)
        if dead is not None:
            out.append(_TablePolicy("dead_letters", "toYYYYMMDD(first_seen)", dead,
                                    cfg.dead_letter_days, True))
        rollup = _fixed_expiry("hour", cfg.rollup_days, now)
        if rollup is not None:
            out += [_TablePolicy(t, "toYYYYMM(hour)", rollup, cfg.rollup_days, False)
                    for t in ROLLUP_TABLES]
        return out

    # -- ClickHouse helpers ---------------------------------------------------------------
    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        from clickhouse_driver.errors import Error as ClickHouseError
        from clickhouse_driver.errors import ServerException

        try:
            return list(self.conn.execute(sql, params))
        except ServerException as exc:
            raise QueryError(f"ClickHouse refused a retention statement: {exc}") from exc
        except (ClickHouseError, OSError, EOFError) as exc:
            raise TransientError(f"ClickHouse unavailable: {exc}") from exc

    def _tables(self) -> set[str]:
        rows = self._execute("SELECT name FROM system.tables WHERE database = %(db)s",
                             {"db": self.db})
        return {r[0] for r in rows}

    def _partitions(self, table: str) -> list[str]:
        rows = self._execute(
            "SELECT DISTINCT partition FROM system.parts "
            "WHERE database = %(db)s AND table = %(t)s AND active ORDER BY partition",
            {"db": self.db, "t": table})
        return [str(r[0]).strip("'") for r in rows]

    @staticmethod
    def _partition_end_s(partition: str) -> int | None:
        """First second after the partition's day (or month), in UTC; None if not a date.

        Only a pre-filter: the caller allows a day of slack for the server's time zone and
        decides with a count over the partition itself.
        """
        try:
            if len(partition) == 8:
                start = datetime(int(partition[:4]), int(partition[4:6]), int(partition[6:]),
                                 tzinfo=UTC)
                return int(start.timestamp()) + DAY_S
            if len(partition) == 6:
                year, month = int(partition[:4]), int(partition[4:])
                nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
                return int(nxt.timestamp())
        except ValueError:
            return None
        return None

    def _wait_for_mutations(self, table: str) -> None:
        deadline = time.monotonic() + self.cfg.mutation_timeout_s
        while True:
            pending = self._execute(
                "SELECT count() FROM system.mutations "
                "WHERE database = %(db)s AND table = %(t)s AND is_done = 0",
                {"db": self.db, "t": table})[0][0]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{self.db}.{table}: row deletion still running after "
                    f"{self.cfg.mutation_timeout_s:g} s; it continues in ClickHouse")
            self._sleep(0.1)

    # -- retention ------------------------------------------------------------------------
    def plan_and_apply(self, *, dry_run: bool = False) -> list[Removal]:
        """Remove (or with ``dry_run`` only count) everything expired; returns what went."""
        existing = self._tables()
        removals: list[Removal] = []
        for policy in self._policies():
            if policy.table in existing:
                removals += self._apply_table(policy, dry_run)
        if self.cfg.session_days > 0 and "sessions" in existing:
            removals += self._apply_sessions(dry_run)
        return removals

    def _apply_table(self, policy: _TablePolicy, dry_run: bool) -> list[Removal]:
        horizon = self.now_s - policy.min_days * DAY_S
        table = f"{self.db}.{policy.table}"
        expiry = policy.expiry
        removals: list[Removal] = []
        partial: list[str] = []
        for partition in self._partitions(policy.table):
            end = self._partition_end_s(partition)
            if end is None or end > horizon + DAY_S:
                continue  # nothing in it can have expired yet
            params = {**expiry.params, "p": int(partition)}
            where_part = f"{policy.partition_expr} = %(p)s"
            total, expired = self._execute(
                f"SELECT count(), countIf({expiry.sql}) FROM {table} WHERE {where_part}",
                params)[0]
            if total and expired == total:
                if not dry_run:
                    # The id comes from system.parts (digits only, checked by int() above).
                    self._execute(f"ALTER TABLE {table} DROP PARTITION {int(partition)}")
                removals.append(Removal(policy.table, "drop_partition", partition, int(total)))
            elif expired and policy.delete_rows:
                partial.append(partition)
                removals.append(Removal(policy.table, "delete_rows", partition, int(expired)))
        if partial and not dry_run:
            params = {**expiry.params, "parts": tuple(int(p) for p in partial)}
            self._execute(
                f"ALTER TABLE {table} DELETE WHERE {policy.partition_expr} IN %(parts)s "
                f"AND {expiry.sql}", params)
            self._wait_for_mutations(policy.table)
        return removals

    def _apply_sessions(self, dry_run: bool) -> list[Removal]:
        cutoff = {"now": self.now_s}
        cond = f"last_event_at < toDateTime(%(now)s - {self.cfg.session_days * DAY_S})"
        # FINAL: only a session whose newest version is old has ended its life.
        stale = [r[0] for r in self._execute(
            f"SELECT session_id FROM {self.db}.sessions FINAL WHERE {cond}", cutoff)]
        if not stale:
            return []
        if not dry_run:
            self._delete_where("sessions", "session_id IN %(ids)s", {"ids": tuple(stale)})
        return [Removal("sessions", "delete_rows", f"last event over {self.cfg.session_days} days ago",
                        len(stale))]

    def _delete_where(self, table: str, where: str, params: dict[str, Any]) -> int:
        rows = int(self._execute(f"SELECT count() FROM {self.db}.{table} WHERE {where}",
                                 params)[0][0])
        if rows:
            self._execute(f"ALTER TABLE {self.db}.{table} DELETE WHERE {where}", params)
            self._wait_for_mutations(table)
        return rows

    # -- erasure building blocks ----------------------------------------------------------
    def delete_sessions(self, session_ids: Sequence[str]) -> list[Removal]:
        """Remove every row of these sessions from every table that has a session_id."""
        ids = tuple(dict.fromkeys(session_ids))
        if not ids:
            return []
        existing = self._tables()
        removals = []
        for table in ("telemetry_events", "sessions", "pattern_alerts", "dead_letters"):
            if table in existing:
                rows = self._delete_where(table, "session_id IN %(ids)s", {"ids": ids})
                removals.append(Removal(table, "delete_rows", f"{len(ids)} session(s)", rows))
        return removals

    def delete_user(self, user: str) -> list[Removal]:
        """Remove a user's events (by the metadata user key) and everything of their sessions."""
        if not user:
            raise QueryError("a user id is required")
        sessions = [r[0] for r in self._execute(
            f"SELECT DISTINCT session_id FROM {self.db}.telemetry_events "
            "WHERE visitParamExtractString(metadata, %(key)s) = %(user)s",
            {"key": self.cfg.user_key, "user": user})]
        removals = self.delete_sessions(sessions)
        # Events of the user outside those sessions cannot exist (a session is one user's), but
        # delete by the key too so a mixed session never keeps the user's own rows.
        rows = self._delete_where(
            "telemetry_events", "visitParamExtractString(metadata, %(key)s) = %(user)s",
            {"key": self.cfg.user_key, "user": user})
        if rows:
            removals.append(Removal("telemetry_events", "delete_rows", f"user {user}", rows))
        return removals
