"""Abusive clients of the dashboard gateway (used by test_gateway_abuse.py).

Each function plays one kind of abuse against a running gateway and returns what the gateway
answered, so the test can state which answers are acceptable (refusals, never a 5xx other than
the documented 503 "busy", never a crash).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt


@dataclass
class LegitClient:
    """A dashboard user watching one session: what it received, and when."""

    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    closed_with: int | None = None

    def updates_after(self, at: float, session_id: str) -> int:
        return sum(1 for t, m in self.frames if t >= at and m.get("session_id") == session_id
                   and m.get("message_type") == "widget_update")

    def snapshots(self, session_id: str) -> list[dict[str, Any]]:
        return [m for _t, m in self.frames if m.get("message_type") == "snapshot"
                and m.get("session_id") == session_id and m.get("widgets")]


async def watch_session(ws_base: str, token: str, session_id: str, client: LegitClient,
                        stop: asyncio.Event) -> None:
    """Stay connected to one session until ``stop``; record every frame."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
            http.ws_connect(f"{ws_base}/sessions/{session_id}", heartbeat=10) as ws:
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                receive = asyncio.create_task(ws.receive())
                done, _ = await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    break
                msg = receive.result()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    client.frames.append((time.monotonic(), json.loads(msg.data)))
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.ERROR):
                    client.closed_with = ws.close_code
                    return
        finally:
            stopper.cancel()


async def handshake_flood(ws_base: str, tokens: list[str], hold: asyncio.Event) -> Counter[int]:
    """Open one WebSocket per token at once and hold the accepted ones until ``hold`` is set;
    returns handshake status -> count (101 accepted)."""
    statuses: Counter[int] = Counter()
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one(token: str) -> None:
            try:
                ws = await http.ws_connect(f"{ws_base}/sessions",
                                           headers={"Authorization": f"Bearer {token}"},
                                           heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=5))
            except aiohttp.WSServerHandshakeError as exc:
                statuses[exc.status] += 1
                return
            except (aiohttp.ClientError, OSError, TimeoutError):
                statuses[0] += 1  # connection refused or reset: counted, judged by the test
                return
            statuses[101] += 1
            sockets.append(ws)

        await asyncio.gather(*(one(t) for t in tokens))
        await hold.wait()
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
    return statuses


async def idle_connections(host: str, port: int, n: int, hold: asyncio.Event) -> int:
    """Open ``n`` TCP connections that never send a request (a slowloris); returns how many
    the gateway accepted."""
    writers: list[asyncio.StreamWriter] = []
    for _ in range(n):
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            continue
        writers.append(writer)
    await hold.wait()
    for writer in writers:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return len(writers)


async def oversized_frames(ws_base: str, token: str) -> dict[str, Any]:
    """Frames over the gateway's limits on authenticated sockets: a 20 KiB message (over the
    protocol's 16 KiB, under the socket's 64 KiB), a 1 MiB and a 16 MiB text frame, a 1 MiB
    binary frame. Returns what each got (a reply or the close code)."""
    out: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for name, payload in (("text_20k", "x" * (20 * 1024)), ("text_1m", "y" * 2**20),
                              ("text_16m", "z" * (16 * 2**20)), ("binary_1m", b"\0" * 2**20)):
            async with http.ws_connect(f"{ws_base}/sessions", heartbeat=None) as ws:
                await ws.receive(timeout=15)  # the session list
                try:
                    if isinstance(payload, bytes):
                        await ws.send_bytes(payload)
                    else:
                        await ws.send_str(payload)
                    msg = await ws.receive(timeout=15)
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                    out[name] = f"send failed: {type(exc).__name__}"
                    continue
                if msg.type == aiohttp.WSMsgType.TEXT:
                    out[name] = json.loads(msg.data).get("error")
                else:
                    out[name] = ws.close_code
    return out


def forged_frame_header(host: str, port: int, path: str, token: str) -> bytes:
    """A hand-made handshake, then a frame header announcing 2**40 bytes (none follow);
    returns what the server sent back after the header (a close frame, or nothing)."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {token}\r\n\r\n")
    with socket.create_connection((host, port), timeout=15) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return b""
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        sock.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**40) + os.urandom(4))
        received = b""
        with contextlib.suppress(OSError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        return received


def bad_tokens(secret: str, audience: str = "agentwatch", issuer: str = "agentwatch") -> list[str]:
    """Invalid JWTs of every kind the gateway must refuse."""
    now = int(time.time())
    claims = {"sub": "mallory", "role": "admin", "aud": audience, "iss": issuer, "iat": now,
              "exp": now + 600}
    none_alg = (base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode() + "."
                + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + ".")
    return [
        "garbage", "a.b.c", "", "x" * 8192, none_alg,
        jwt.encode(claims, "not-the-secret-" + "0" * 32, algorithm="HS256"),
        jwt.encode({**claims, "exp": now - 10}, secret, algorithm="HS256"),
        jwt.encode({**claims, "aud": "someone-else"}, secret, algorithm="HS256"),
        jwt.encode({**claims, "iss": "someone-else"}, secret, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "sub"}, secret, algorithm="HS256"),
        jwt.encode({**claims, "role": "root"}, secret, algorithm="HS256"),
        jwt.encode(claims, secret, algorithm="HS512"),  # a valid signature, an unlisted algorithm
    ]


async def invalid_jwt_storm(base: str, tokens: list[str], rounds: int) -> Counter[int]:
    """Every bad token on REST and on the WebSocket handshake, ``rounds`` times."""
    statuses: Counter[int] = Counter()
    ws_base = base.replace("http://", "ws://")
    async with aiohttp.ClientSession() as http:
        async def rest(token: str) -> None:
            async with http.get(f"{base}/api/sessions",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                statuses[resp.status] += 1

        async def handshake(token: str) -> None:
            try:
                ws = await http.ws_connect(f"{ws_base}/sessions",
                                           headers={"Authorization": f"Bearer {token}"})
            except aiohttp.WSServerHandshakeError as exc:
                statuses[exc.status] += 1
                return
            statuses[101] += 1
            await ws.close()

        for _ in range(rounds):
            await asyncio.gather(*(rest(t) for t in tokens), *(handshake(t) for t in tokens))
    return statuses


async def rest_burst(base: str, token: str, n: int) -> Counter[int]:
    """``n`` REST reads at once by one valid user."""
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async def one() -> None:
            async with http.get(f"{base}/api/me") as resp:
                statuses[resp.status] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return statuses


async def message_burst(ws_base: str, token: str, n: int) -> Counter[str]:
    """``n`` client messages at once on one socket; counts the replies by kind (``error:<code>``
    or the message_type), then checks the socket still answers a ping once the bucket refills."""
    replies: Counter[str] = Counter()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
            http.ws_connect(f"{ws_base}/sessions", heartbeat=None) as ws:
        await ws.receive(timeout=15)  # the session list
        for _ in range(n):
            await ws.send_str('{"action":"ping"}')
        deadline = time.monotonic() + 30
        while sum(replies.values()) < n and time.monotonic() < deadline:
            msg = await ws.receive(timeout=15)
            if msg.type != aiohttp.WSMsgType.TEXT:
                replies[f"closed:{ws.close_code}"] += 1
                return replies
            data = json.loads(msg.data)
            kind = data.get("message_type")
            replies[f"error:{data.get('error')}" if kind == "error" else str(kind)] += 1
        await asyncio.sleep(3)  # let the bucket refill
        await ws.send_str('{"action":"ping"}')
        while True:
            msg = await ws.receive(timeout=15)
            if msg.type != aiohttp.WSMsgType.TEXT:
                replies[f"closed:{ws.close_code}"] += 1
                break
            if json.loads(msg.data).get("message_type") == "pong":
                replies["pong_after_burst"] += 1
                break
    return replies
