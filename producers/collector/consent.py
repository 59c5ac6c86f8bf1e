"""The collector's door: attribute each request to a user and drop what the user opted out of.

A request's user is its ``X-Agentwatch-User`` header, else the hook body's ``user_id``, else
``privacy.user_id`` (default: the OS user running the collector). Every event kept is stamped
with ``metadata.user_id``; events of an opted-out user are counted and never spooled, so they
never reach Kafka. Consent comes from an in-memory ``ConsentCache`` that ``refresh_loop``
re-reads from ClickHouse every ``privacy.refresh_s``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline import privacy
from pipeline.privacy import ConsentCache, Telemetry

log = logging.getLogger("producers.collector")


class ConsentGate:
    def __init__(self, cache: ConsentCache, configured_user: str,
                 registry: CollectorRegistry | None = None) -> None:
        self.cache = cache
        self.configured_user = configured_user
        reg = registry if registry is not None else CollectorRegistry()
        self.dropped = Counter("agentwatch_collector_consent_dropped_events",
                               "Events dropped at the door: the user opted out (or minimal)",
                               ("source", "reason"), registry=reg)
        self.dropped_requests = Counter("agentwatch_collector_consent_dropped_requests",
                                        "Requests whose events were all dropped for consent",
                                        ("endpoint",), registry=reg)
        self.refresh_failures = Counter("agentwatch_collector_consent_refresh_failures",
                                        "Failed reads of the consent table", registry=reg)
        self.users_opted_out = Gauge("agentwatch_collector_consent_opted_out_users",
                                     "Users known to have disabled telemetry", registry=reg)

    def user_for(self, header: str | None, body_field: object = None) -> str | None:
        return privacy.resolve_user(header, body_field, self.configured_user)

    def mode(self, user: str | None) -> Telemetry:
        return self.cache.mode(user)

    def admit(self, events: list[dict[str, Any]], user: str | None) -> list[dict[str, Any]]:
        """The events the user's consent allows, stamped with the user; the rest counted."""
        mode = self.mode(user)
        if mode is Telemetry.ENABLED:
            kept = events
        else:
            kept = [e for e in events if privacy.allowed(str(e.get("event_type")), mode)]
            reason = mode.value
            for event in events:
                if not privacy.allowed(str(event.get("event_type")), mode):
                    self.dropped.labels(str(event.get("source")), reason).inc()
        privacy.stamp(kept, user)
        return kept

    def refreshed(self, modes: Mapping[str, Telemetry]) -> None:
        self.cache.replace(modes)
        self.users_opted_out.set(sum(1 for m in modes.values() if m is Telemetry.DISABLED))


async def refresh_loop(gate: ConsentGate, load: Callable[[], Mapping[str, Telemetry]],
                       interval_s: float) -> None:
    """Re-read consent every ``interval_s`` (in a thread: the driver blocks); never raises."""
    failing = False
    while True:
        try:
            modes = await asyncio.to_thread(load)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            gate.refresh_failures.inc()
            if not failing:
                log.warning("consent table unreadable; %s", "collecting users not known to "
                            "have opted out" if gate.cache.fail_open else "collecting nothing "
                            "once stale", extra={"error": str(exc)})
            failing = True
        else:
            if failing:
                log.info("consent table readable again")
            failing = False
            gate.refreshed(modes)
        await asyncio.sleep(interval_s)


class ClickHouseConsentLoader:
    """Reads the consent table over one lazily (re)connected clickhouse-driver client."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._conn: Any = None
        # A cancelled refresh leaves its thread running: close must not pull the socket from it.
        self._lock = threading.Lock()

    def __call__(self) -> Mapping[str, Telemetry]:
        from pipeline.migrations import client
        from pipeline.privacy import ConsentStore

        ch = self._settings.clickhouse
        with self._lock:
            if self._conn is None:
                self._conn = client(ch, ch.database)
            try:
                return ConsentStore(self._conn, ch.database).modes()
            except Exception:
                self._disconnect()
                raise

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
