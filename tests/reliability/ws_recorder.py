"""A dashboard client that records every WebSocket message the gateway sends during a scenario.

It watches the sessions overview (`/sessions`) as an admin, opens `/sessions/{id}` for every
session the overview names, and keeps each text frame as received, so the leak scan can look
for canaries in what a dashboard user would have seen. It runs its own event loop in a thread:
the scenarios themselves are synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.parse
from collections import Counter
from typing import Any

import aiohttp


class WsRecorder:
    """Records the gateway's WebSocket traffic to one admin client, per socket path."""

    def __init__(self, base_url: str, token: str) -> None:
        self.ws_base = base_url.replace("http://", "ws://")
        self.headers = {"Authorization": f"Bearer {token}"}
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes]] = []
        self._opened: set[str] = set()
        self._errors: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="ws-recorder", daemon=True)
        self._ready = threading.Event()

    # -- public, thread-safe ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def places(self) -> dict[str, bytes]:
        """place name -> raw frame, for ``find_canaries``."""
        with self._lock:
            return {f"ws:{path}:#{i}": data for i, (path, data) in enumerate(self._messages)}

    def message_types(self) -> Counter[tuple[str, str]]:
        """(socket path, message_type) -> frames received."""
        out: Counter[tuple[str, str]] = Counter()
        with self._lock:
            frames = list(self._messages)
        for path, data in frames:
            with contextlib.suppress(ValueError, AttributeError):
                out[(path, str(json.loads(data).get("message_type")))] += 1
        return out

    def sessions_with_widgets(self) -> set[str]:
        """Sessions whose socket delivered widget data (a snapshot or an update)."""
        return {path.rsplit("/", 1)[1] for (path, kind), n in self.message_types().items()
                if path.startswith("/sessions/") and kind in ("snapshot", "widget_update") and n}

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    # -- the loop thread -------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._ready.set()
        # No connection limit: every open WebSocket holds a pooled connection, and the default
        # pool of 100 would leave the sockets of later sessions waiting forever (a long soak).
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers=self.headers, connector=connector) as http:
            tasks: set[asyncio.Task[None]] = set()
            overview = asyncio.create_task(self._overview(http, tasks))
            await self._stop.wait()
            overview.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(overview, *tasks, return_exceptions=True)

    async def _overview(self, http: aiohttp.ClientSession, tasks: set[asyncio.Task[None]]) -> None:
        def on_message(data: dict[str, Any]) -> None:
            found = [s.get("session_id") for s in data.get("sessions", [])]
            found.append((data.get("session") or {}).get("session_id"))
            for session in found:
                if isinstance(session, str) and session and session not in self._opened:
                    self._opened.add(session)
                    tasks.add(asyncio.create_task(self._socket(
                        http, "/sessions/" + urllib.parse.quote(session, safe=""), None)))

        await self._socket(http, "/sessions", on_message)

    async def _socket(self, http: aiohttp.ClientSession, path: str,
                      on_message: Any) -> None:
        # The gateway may restart or refuse for a moment (caught-up wait, rate limit): reconnect,
        # a real dashboard does the same.
        while True:
            try:
                async with http.ws_connect(self.ws_base + path, heartbeat=20,
                                           max_msg_size=0) as ws:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        with self._lock:
                            self._messages.append((urllib.parse.unquote(path), msg.data.encode()))
                        if on_message is not None:
                            with contextlib.suppress(ValueError):
                                on_message(json.loads(msg.data))
            except (aiohttp.ClientError, OSError) as exc:
                with self._lock:
                    self._errors.append(f"{path}: {exc!r}")
            await asyncio.sleep(0.5)
