"""Fan-out of widget changes to WebSocket clients, each with a bounded, coalescing send queue.

A client that keeps up receives every update in order. Once more than ``COALESCE_AFTER``
messages wait (a slow client), a newer update of the same (session, widget) replaces the queued
one and moves to the back, so the client receives the latest state of each widget, in sequence
order, and never a backlog of stale ones. Messages that must not be merged (errors, acks, replay
events) are queued without a key. Past ``max_messages`` or
``max_bytes`` queued, the client is closed (1013, try again later) and its queue freed: memory
per client is bounded whatever the client does. The sender task exists only while a client has
something queued, so idle clients cost one socket and one small object.

A client with nothing queued whose socket has room is written directly (``wire.py``): a message
for many clients is encoded once as a frame and written to each transport in the same step,
without a task per client; the queue is the path for clients that have fallen behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

from consumers.gateway import protocol
from consumers.gateway.auth import Principal
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.state import WIDGETS, Change, WidgetStore
from consumers.gateway.wire import DirectWrite, Outgoing, text_frame

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 1013
CLOSE_ERASED = 4410
"""Private-use close code: the session's telemetry was erased (a reconnect finds nothing)."""
COALESCE_AFTER = 16
"""Queued messages beyond which a client counts as slow and its widget updates are merged."""


class Socket(Protocol):
    """The part of aiohttp's WebSocketResponse a client uses."""

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


class Client:
    _ids = itertools.count(1)

    def __init__(self, socket: Socket, principal: Principal, session_id: str | None,
                 metrics: GatewayMetrics, *, max_messages: int, max_bytes: int) -> None:
        self.id = next(self._ids)
        self.socket = socket
        self.principal = principal
        self.session_id = session_id
        """None for an overview (/sessions) client."""
        self.widgets: set[str] = set(WIDGETS)
        self.explicit = False
        """True once the client chose widgets with subscribe; before that it gets all of them."""
        self.filters: dict[str, dict[str, tuple[str, ...]]] = {}
        self.metrics = metrics
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._pending: OrderedDict[int, tuple[Hashable | None, str]] = OrderedDict()
        self._latest: dict[Hashable, int] = {}
        """Coalescing key -> queue position of its newest queued message."""
        self._bytes = 0
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._unique = itertools.count()
        self.direct: DirectWrite | None = None
        """Set once the socket is open (ws.py); None: every message goes through the queue."""
        self.closed = False
        self.dropped = False

    @property
    def queued(self) -> int:
        return len(self._pending)

    def enqueue(self, key: Hashable | None, message: str | Outgoing) -> None:
        """Send ``message`` now if the client is keeping up, else queue it; ``key`` (what it is
        about) lets a slow client's queue merge it."""
        if self.closed:
            return
        if self.direct is not None and not self._pending and self._sender is None:
            # Nothing queued ahead of it: writing now keeps the order.
            frame = message.frame if isinstance(message, Outgoing) else text_frame(message)
            if self.direct(frame):
                self.metrics.sent.inc()
                return
        msg = message.text if isinstance(message, Outgoing) else message
        position = next(self._unique)
        if key is not None:
            if len(self._pending) >= COALESCE_AFTER:
                older = self._latest.get(key)
                if older is not None and older in self._pending:
                    _k, old = self._pending.pop(older)
                    self._bytes -= len(old)
                    self.metrics.coalesced.inc()
            self._latest[key] = position
        self._pending[position] = (key, msg)
        self._bytes += len(msg)
        if len(self._pending) > self.max_messages or self._bytes > self.max_bytes:
            self.drop()
            return
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._pending and not self.closed:
                position, (key, msg) = self._pending.popitem(last=False)
                if key is not None and self._latest.get(key) == position:
                    del self._latest[key]
                self._bytes -= len(msg)
                await self.socket.send_str(msg)
                self.metrics.sent.inc()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            # The peer went away mid-send; the handler's finally removes the client.
            self.closed = True
        finally:
            self._sender = None

    def drop(self) -> None:
        """Close a client that cannot keep up, and free its queue at once."""
        if self.closed:
            return
        self.closed = self.dropped = True
        self._pending.clear()
        self._latest.clear()
        self._bytes = 0
        self.metrics.dropped_clients.inc()
        log.info("dropping slow client", extra={"client": self.id, "user": self.principal.user})
        self._closer = asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        with contextlib.suppress(Exception):
            await self.socket.close(code=CLOSE_TOO_SLOW, message=b"client too slow")

    def stop(self) -> None:
        self.closed = True
        self._pending.clear()
        self._latest.clear()
        if self._sender is not None:
            self._sender.cancel()


class Hub:
    """Who listens to what; fed by the store's change listener on the event loop."""

    def __init__(self, store: WidgetStore, metrics: GatewayMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.by_session: dict[str, set[Client]] = {}
        self.overview: set[Client] = set()
        store.listeners.append(self.on_change)

    def count(self) -> int:
        return sum(len(c) for c in self.by_session.values()) + len(self.overview)

    def join(self, client: Client) -> None:
        """Register the client and queue its snapshot in the same step (no update can slip
        between the two: both run without yielding to the event loop)."""
        if client.session_id is None:
            self.overview.add(client)
            self.metrics.clients.labels("overview").inc()
            client.enqueue(("list",), self.session_list(client.principal))
        else:
            self.by_session.setdefault(client.session_id, set()).add(client)
            self.metrics.clients.labels("session").inc()
            self.send_snapshot(client)

    def leave(self, client: Client) -> None:
        client.stop()
        if client.session_id is None:
            if client in self.overview:
                self.overview.discard(client)
                self.metrics.clients.labels("overview").dec()
            return
        clients = self.by_session.get(client.session_id)
        if clients is not None and client in clients:
            clients.discard(client)
            self.metrics.clients.labels("session").dec()
            if not clients:
                del self.by_session[client.session_id]

    def send_snapshot(self, client: Client, widgets: set[str] | None = None, *,
                      resync: bool = False) -> None:
        assert client.session_id is not None
        session = self.store.get(client.session_id)
        chosen = client.widgets if widgets is None else widgets
        ordered = [w for w in WIDGETS if w in chosen]
        # Keyed by the widget set: a resync replaces a queued snapshot of the same widgets,
        # while a snapshot of newly subscribed widgets never replaces the full one.
        client.enqueue(("snapshot", tuple(ordered)), protocol.snapshot(session, client.session_id, ordered,
                                                        client.filters, resync=resync))

    def session_list(self, principal: Principal) -> str:
        rows = [s.overview() for s in self.store.visible(principal.may_see)]
        rows.sort(key=lambda r: r.get("last_event_at") or 0, reverse=True)
        return protocol.message("session_list", sessions=rows)

    def on_change(self, change: Change) -> None:
        session, state = change.session, change.widget
        sid = session.session_id
        clients = self.by_session.get(sid)
        if clients:
            if change.gap:
                self.metrics.gaps.inc()
                for client in clients:
                    self.send_snapshot(client, resync=True)
            else:
                started = time.perf_counter()
                shared: Outgoing | None = None
                # Clients with the same filter (the dashboard's severity buttons) share a message.
                narrowed: dict[tuple[tuple[str, tuple[str, ...]], ...], Outgoing] = {}
                for client in clients:
                    if state.widget not in client.widgets:
                        continue
                    criteria = client.filters.get(state.widget)
                    if criteria is not None:
                        which = tuple(sorted(criteria.items()))
                        msg = narrowed.get(which)
                        if msg is None:
                            data = protocol.apply_filter(state.widget, state.data, criteria)
                            msg = narrowed[which] = Outgoing(protocol.widget_update(
                                sid, state, json.dumps(data, separators=(",", ":"))))
                        client.enqueue((sid, state.widget), msg)
                    else:
                        if shared is None:
                            shared = Outgoing(protocol.widget_update(sid, state))
                        client.enqueue((sid, state.widget), shared)
                self.metrics.fanout.observe(time.perf_counter() - started)
        if change.overview_changed and self.overview:
            row: Outgoing | None = None
            for client in self.overview:
                if client.principal.may_see(session.owner):
                    if row is None:
                        row = Outgoing(protocol.message("session_update", session=session.overview()))
                    client.enqueue(("session", sid), row)

    def broadcast_session(self, session_id: str, msg: str) -> None:
        """A message every client of the session gets, never coalesced (replay events)."""
        shared = Outgoing(msg)
        for client in self.by_session.get(session_id, ()):
            client.enqueue(None, shared)

    def send_to_user(self, session_id: str, user: str, key: Hashable | None, msg: str) -> None:
        """A message for one user's clients of the session (a replay's rebuilt widgets go to
        whoever started the replay); ``key`` lets a slow client's queue merge it."""
        for client in self.by_session.get(session_id, ()):
            if client.principal.user == user:
                client.enqueue(key, msg)

    async def session_erased(self, session_id: str) -> None:
        """Disconnect the erased session's viewers and send every overview a list without it.
        The handlers' ``leave`` still does the bookkeeping when their sockets end."""
        clients = list(self.by_session.get(session_id, ()))
        for client in clients:
            client.stop()
        await asyncio.gather(*(c.socket.close(code=CLOSE_ERASED, message=b"session erased")
                               for c in clients), return_exceptions=True)
        for client in self.overview:
            client.enqueue(("list",), self.session_list(client.principal))

    async def close_all(self) -> None:
        clients = [c for cs in self.by_session.values() for c in cs] + list(self.overview)
        for client in clients:
            client.stop()
        await asyncio.gather(*(c.socket.close(code=1001, message=b"gateway shutting down")
                               for c in clients), return_exceptions=True)
