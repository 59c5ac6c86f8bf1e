"""The access audit log: every dashboard view, REST read, export and delete, into ClickHouse.

Rows are buffered in memory and inserted in batches by a background task (one insert per
``flush_s``), so a request never waits for ClickHouse. While ClickHouse is down the buffer is
kept up to ``max_rows``; past that the oldest rows are dropped and counted
(``agentwatch_gateway_audit_rows_dropped``) rather than growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from dataclasses import astuple, dataclass
from enum import StrEnum
from typing import Any

from consumers.gateway.chpool import ClickHousePool
from consumers.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class AuditAction(StrEnum):
    ACCESSED = "telemetry.accessed"
    EXPORTED = "telemetry.exported"
    DELETED = "telemetry.deleted"
    PRIVACY_UPDATED = "privacy.updated"


COLUMNS = ("at", "at_us", "action", "access_type", "user_id", "role", "session_id", "resource",
           "client_addr", "user_agent", "status", "gateway")


@dataclass(frozen=True)
class AuditRow:
    at: int
    at_us: int
    action: str
    access_type: str
    user_id: str
    role: str
    session_id: str
    resource: str
    client_addr: str
    user_agent: str
    status: int
    gateway: str


class AuditLog:
    def __init__(self, pool: ClickHousePool | None, metrics: GatewayMetrics, *,
                 flush_s: float = 1.0, max_rows: int = 100_000) -> None:
        self.pool = pool
        self.metrics = metrics
        self.flush_s = flush_s
        self._rows: deque[AuditRow] = deque()
        self._max_rows = max_rows
        self._gateway = socket.gethostname()
        self._wake = asyncio.Event()

    def record(self, action: AuditAction, access_type: str, *, user: str, role: str,
               session_id: str = "", resource: str = "", client_addr: str = "",
               user_agent: str = "", status: int = 200) -> None:
        now_us = time.time_ns() // 1000
        if len(self._rows) >= self._max_rows:
            self._rows.popleft()
            self.metrics.audit_dropped.inc()
        self._rows.append(AuditRow(
            now_us // 1_000_000, now_us, action.value, access_type, user, role, session_id,
            resource[:2000], client_addr, user_agent[:500], status, self._gateway))

    @property
    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> int:
        """Insert what is buffered; rows stay buffered if ClickHouse refuses them."""
        if self.pool is None or not self._rows:
            return 0
        batch, self._rows = self._rows, deque()
        sql = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES"
        data = [astuple(r) for r in batch]

        def insert(conn: Any) -> None:
            conn.execute(sql, data)

        try:
            await self.pool.run(insert)
        except BaseException:
            # Back in front of anything recorded meanwhile, oldest dropped past the bound.
            batch.extend(self._rows)
            while len(batch) > self._max_rows:
                batch.popleft()
                self.metrics.audit_dropped.inc()
            self._rows = batch
            raise
        self.metrics.audit_written.inc(len(data))
        return len(data)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("audit insert failed; keeping rows", extra={
                    "error": str(exc), "pending": len(self._rows)})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
