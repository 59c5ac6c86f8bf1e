"""Who an event belongs to and whether that user lets us collect it (consent, issue 11).

The consent store is a ClickHouse table (``user_privacy``, migration 0006, ReplacingMergeTree on
``updated_us``): durable, readable by every collector, writable by the CLI and the gateway. The
collector keeps a ``ConsentCache`` in memory, refreshed every ``privacy.refresh_s`` by a
background task, and decides per request without a round trip. Producers and consumers both
import this module, so it lives in the shared core.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pipeline.errors import QueryError, TransientError
from pipeline.settings import RetentionSettings

TABLE = "user_privacy"
USER_KEY = "user_id"
"""The metadata key that names an event's user (the widget reducer and retention read it)."""
USER_HEADER = "X-Agentwatch-User"
MAX_USER_LEN = 256

MINIMAL_EVENT_TYPES = frozenset({"session.started", "session.ended", "session.stalled",
                                 "llm.request"})
"""What ``minimal`` keeps: that a session ran, when, and what it cost; no files, commands,
prompts, tool calls or network traces."""


class Telemetry(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    """Opted out: the collector drops the user's events at the door."""
    MINIMAL = "minimal"


@dataclass(frozen=True)
class Preference:
    user_id: str
    telemetry: Telemetry
    retention_days: int
    """0: the deployment's retention rules apply."""
    updated_us: int
    updated_by: str


def default_user_id() -> str:
    """The OS account running the process: the identity of a single-user local stack."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers with an arbitrary uid)
        return ""


def clean_user(value: object) -> str | None:
    """A usable user id, or None: a string of 1..256 printable characters."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_USER_LEN or not value.isprintable():
        return None
    return value


def resolve_user(header: str | None, body_field: object, configured: str) -> str | None:
    """Header (set by an authenticating proxy or the agent's config), then the hook body's
    ``user_id`` (the command hook adds it), then the collector's configured id."""
    return clean_user(header) or clean_user(body_field) or clean_user(configured)


def stamp(events: Iterable[dict[str, Any]], user: str | None) -> None:
    """Attribute events to ``user`` in place (the collector's identity wins over any claim)."""
    if not user:
        return
    for event in events:
        metadata = event.get("metadata")
        if metadata is None:
            event["metadata"] = metadata = {}
        metadata[USER_KEY] = user


def allowed(event_type: str, mode: Telemetry) -> bool:
    if mode is Telemetry.ENABLED:
        return True
    if mode is Telemetry.MINIMAL:
        return event_type in MINIMAL_EVENT_TYPES
    return False


class ConsentCache:
    """The last known preferences of every user who set one; others are ``enabled``.

    ``fail_open``: when the store has not answered for ``max_stale_s`` (or never answered), a
    user not known to have opted out is collected (availability first). With ``fail_open``
    False, nothing is collected until the store answers (privacy first). A user known to have
    opted out stays dropped either way.
    """

    def __init__(self, *, fail_open: bool = True, max_stale_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fail_open = fail_open
        self.max_stale_s = max_stale_s
        self._clock = clock
        self._prefs: dict[str, Telemetry] = {}
        self._loaded_at: float | None = None

    def replace(self, prefs: Mapping[str, Telemetry]) -> None:
        self._prefs = dict(prefs)
        self._loaded_at = self._clock()

    def set(self, user: str, mode: Telemetry) -> None:
        """Apply one change locally at once (the store will say the same on the next refresh)."""
        self._prefs[user] = mode

    @property
    def stale(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at > self.max_stale_s

    def mode(self, user: str | None) -> Telemetry:
        known = self._prefs.get(user) if user else None
        if known is Telemetry.DISABLED:
            return known
        if self.stale and not self.fail_open:
            return Telemetry.DISABLED
        return known or Telemetry.ENABLED


def retention_with_preferences(cfg: RetentionSettings,
                               prefs: Iterable[Preference]) -> RetentionSettings:
    """The retention rules plus each user's own ``retention_days`` (0: no preference). A user
    the operator configured in ``retention.user_days`` keeps the operator's value (legal holds)."""
    extra = {p.user_id: p.retention_days for p in prefs
             if p.retention_days > 0 and p.user_id not in cfg.user_days}
    if not extra:
        return cfg
    return cfg.model_copy(update={"user_days": {**cfg.user_days, **extra}})


# -- the ClickHouse store ---------------------------------------------------------------------

_COLUMNS = ("user_id", "telemetry", "retention_days", "updated_us", "updated_by")


class ConsentStore:
    """Reads and writes ``user_privacy`` through a clickhouse-driver client (blocking calls)."""

    def __init__(self, conn: Any, database: str) -> None:
        self.conn = conn
        self.db = database

    def _execute(self, sql: str, params: Any = None) -> list[Any]:
        from clickhouse_driver.errors import Error as ClickHouseError
        from clickhouse_driver.errors import ServerException

        try:
            result = self.conn.execute(sql, params)
            return list(result) if isinstance(result, list) else []  # an INSERT answers a count
        except ServerException as exc:
            raise QueryError(f"ClickHouse refused a consent statement: {exc}") from exc
        except (ClickHouseError, OSError, EOFError) as exc:
            raise TransientError(f"ClickHouse unavailable: {exc}") from exc

    def load(self) -> dict[str, Preference]:
        # argMax rather than FINAL: the newest row per user whatever parts merged (18.16 safe).
        rows = self._execute(
            f"SELECT user_id, argMax(telemetry, updated_us), argMax(retention_days, updated_us), "
            f"max(updated_us), argMax(updated_by, updated_us) FROM {self.db}.{TABLE} "
            "GROUP BY user_id")
        out: dict[str, Preference] = {}
        for user, telemetry, days, at, by in rows:
            try:
                mode = Telemetry(telemetry)
            except ValueError:
                mode = Telemetry.DISABLED  # an unknown value is not consent
            out[user] = Preference(user, mode, int(days), int(at), by)
        return out

    def modes(self) -> dict[str, Telemetry]:
        return {u: p.telemetry for u, p in self.load().items()}

    def get(self, user: str) -> Preference | None:
        return self.load_one(user)

    def load_one(self, user: str) -> Preference | None:
        rows = self._execute(
            f"SELECT argMax(telemetry, updated_us), argMax(retention_days, updated_us), "
            f"max(updated_us), argMax(updated_by, updated_us), count() FROM {self.db}.{TABLE} "
            "WHERE user_id = %(u)s", {"u": user})
        if not rows or not rows[0][4]:
            return None
        telemetry, days, at, by, _ = rows[0]
        try:
            mode = Telemetry(telemetry)
        except ValueError:
            mode = Telemetry.DISABLED
        return Preference(user, mode, int(days), int(at), by)

    def set(self, user: str, *, telemetry: Telemetry | None = None,
            retention_days: int | None = None, by: str = "") -> Preference:
        """Upsert; fields left None keep their stored value (or the defaults)."""
        if clean_user(user) is None:
            raise QueryError("a user id is required (1..256 printable characters)")
        if retention_days is not None and retention_days < 0:
            raise QueryError("retention_days must be >= 0")
        current = self.load_one(user)
        now_us = time.time_ns() // 1000
        if current is not None and now_us <= current.updated_us:
            now_us = current.updated_us + 1  # the newest write must win argMax
        pref = Preference(
            user,
            telemetry or (current.telemetry if current else Telemetry.ENABLED),
            retention_days if retention_days is not None else (
                current.retention_days if current else 0),
            now_us, by)
        self._execute(f"INSERT INTO {self.db}.{TABLE} ({', '.join(_COLUMNS)}) VALUES",
                      [(pref.user_id, pref.telemetry.value, pref.retention_days, pref.updated_us,
                        pref.updated_by)])
        return pref
