"""WebSocket handlers: /sessions/{session_id} (one session's widgets) and /sessions (overview).

The handshake is authenticated and authorised before the upgrade, so a refused client gets a
plain HTTP 401/403 and never a socket. A plain browser GET (no upgrade) of either path serves
the dashboard page instead, so the URLs can be bookmarked.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from consumers.gateway import protocol
from consumers.gateway.context import GATEWAY, Gateway
from consumers.gateway.hub import Client
from consumers.gateway.middleware import guard, json_error
from consumers.gateway.static import index_response
from consumers.gateway.wire import direct_writer

log = logging.getLogger(__name__)

CATCH_UP_WAIT_S = 10.0


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _wait_caught_up(gw: Gateway) -> None:
    """A snapshot taken before the topic is read to its end would be incomplete."""
    if gw.feed is None or gw.feed.status.caught_up:
        return
    try:
        await asyncio.wait_for(gw.feed.status.caught_up_event.wait(), CATCH_UP_WAIT_S)
    except TimeoutError:
        log.warning("serving a snapshot before the widgets topic was fully read")


async def session_socket(request: web.Request) -> web.StreamResponse:
    if not _is_upgrade(request):
        return index_response()
    gw = request.app[GATEWAY]
    outcome = await guard(gw, request, allow_query=True)
    if isinstance(outcome, web.Response):
        return outcome
    principal = outcome
    session_id = request.match_info["session_id"]
    await _wait_caught_up(gw)
    session = gw.store.get(session_id)
    if not principal.may_see(session.owner if session is not None else None):
        gw.metrics.auth_failures.labels("forbidden").inc()
        gw.audit_request(request, principal, "dashboard_view", session_id, status=403)
        # Same answer for "not yours" and "no such session": existence is not disclosed.
        return json_error(403, "forbidden", "not allowed to see this session")
    if gw.hub.count() >= gw.settings.gateway.max_clients:
        return json_error(503, "busy", "too many clients on this gateway", {"Retry-After": "5"})
    return await _serve(gw, request, Client(
        _socket(gw), principal, session_id, gw.metrics,
        max_messages=gw.settings.gateway.client_queue_max,
        max_bytes=gw.settings.gateway.client_queue_max_bytes), "dashboard_view")


async def overview_socket(request: web.Request) -> web.StreamResponse:
    if not _is_upgrade(request):
        return index_response()
    gw = request.app[GATEWAY]
    outcome = await guard(gw, request, allow_query=True)
    if isinstance(outcome, web.Response):
        return outcome
    if gw.hub.count() >= gw.settings.gateway.max_clients:
        return json_error(503, "busy", "too many clients on this gateway", {"Retry-After": "5"})
    await _wait_caught_up(gw)
    return await _serve(gw, request, Client(
        _socket(gw), outcome, None, gw.metrics,
        max_messages=gw.settings.gateway.client_queue_max,
        max_bytes=gw.settings.gateway.client_queue_max_bytes), "sessions_overview")


def _socket(gw: Gateway) -> web.WebSocketResponse:
    # No permessage-deflate: one update is sent to many clients, and compressing it once per
    # client (zlib per message) costs more CPU than the bytes it saves on a LAN or loopback.
    return web.WebSocketResponse(heartbeat=gw.settings.gateway.heartbeat_s, compress=False,
                                 max_msg_size=protocol.MAX_CLIENT_MESSAGE * 4)


async def _serve(gw: Gateway, request: web.Request, client: Client, access: str) -> web.StreamResponse:
    ws = client.socket
    assert isinstance(ws, web.WebSocketResponse)
    await ws.prepare(request)
    client.direct = direct_writer(ws, request.transport)
    gw.audit_request(request, client.principal, access, client.session_id or "")
    gw.hub.join(client)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                _handle(gw, client, msg.data)
            elif msg.type == WSMsgType.BINARY:
                client.enqueue(None, protocol.error("malformed", "send JSON text messages"))
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        gw.hub.leave(client)
    return ws


def _handle(gw: Gateway, client: Client, text: str) -> None:
    wait = gw.limiter.take("user:" + client.principal.user)
    if wait > 0:
        gw.metrics.rate_limited.inc()
        client.enqueue(None, protocol.message("error", error="rate_limited",
                                              message="too many messages", retry_after_s=wait))
        return
    try:
        action = protocol.parse_action(text)
    except protocol.ProtocolError as exc:
        gw.metrics.protocol_errors.labels(exc.code).inc()
        client.enqueue(None, protocol.error(exc.code, str(exc)))
        return
    if action.name == "ping":
        client.enqueue(None, protocol.message("pong"))
        return
    if client.session_id is None:
        if action.name == "resync":
            client.enqueue(("list",), gw.hub.session_list(client.principal))
        else:
            client.enqueue(None, protocol.error(
                "unsupported", "the overview socket takes resync and ping only"))
        return
    if action.name == "subscribe":
        added = set(action.widgets) - (client.widgets if client.explicit else set())
        client.widgets = (client.widgets if client.explicit else set()) | set(action.widgets)
        client.explicit = True
        client.enqueue(None, protocol.message("subscribed", widgets=sorted(client.widgets)))
        if added:
            gw.hub.send_snapshot(client, added)
    elif action.name == "unsubscribe":
        client.widgets -= set(action.widgets)
        client.explicit = True
        client.enqueue(None, protocol.message("subscribed", widgets=sorted(client.widgets)))
    elif action.name == "filter":
        assert action.widget is not None and action.criteria is not None
        if action.criteria:
            client.filters[action.widget] = dict(action.criteria)
        else:
            client.filters.pop(action.widget, None)
        client.enqueue(None, protocol.message(
            "filtered", widget=action.widget,
            criteria={k: list(v) for k, v in action.criteria.items()}))
        gw.hub.send_snapshot(client, {action.widget})
    elif action.name == "resync":
        gw.hub.send_snapshot(client, resync=True)
