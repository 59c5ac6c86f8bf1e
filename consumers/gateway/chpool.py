"""A few clickhouse-driver connections used from worker threads, so the event loop never blocks.

clickhouse-driver is synchronous and a connection serves one query at a time: each call takes a
free connection (made lazily), runs in ``asyncio.to_thread``, and gives it back; a connection
that failed is discarded rather than reused in an unknown state.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.migrations import client
from pipeline.settings import ClickHouseSettings

T = TypeVar("T")


class ClickHousePool:
    def __init__(self, ch: ClickHouseSettings, database: str, size: int) -> None:
        self.ch = ch
        self.database = database
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self._slots = asyncio.Semaphore(size)

    async def run(self, fn: Callable[[Any], T]) -> T:
        async with self._slots:
            return await asyncio.to_thread(self._call, fn)

    def _call(self, fn: Callable[[Any], T]) -> T:
        with self._lock:
            conn = self._free.pop() if self._free else None
        if conn is None:
            conn = client(self.ch, self.database)
        try:
            result = fn(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.disconnect()
            raise
        with self._lock:
            self._free.append(conn)
        return result

    def close(self) -> None:
        with self._lock:
            conns, self._free = self._free, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.disconnect()
