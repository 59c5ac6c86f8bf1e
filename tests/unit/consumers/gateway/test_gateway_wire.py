"""Frames encoded once and written directly: valid RFC 6455 frames, shared between clients,
in order with the queue when a client's socket is full, never after the socket closed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from consumers.gateway.auth import Principal, Role
from consumers.gateway.hub import Client, Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.state import WidgetStore
from consumers.gateway.wire import direct_writer, text_frame


class QueueSocket:
    """The queued path: what ``send_str`` received, in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.sent.append(data)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        return True


class Wire:
    """A direct writer that can be made to refuse (a full transport)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.room = True

    def __call__(self, frame: bytes) -> bool:
        if not self.room:
            return False
        self.frames.append(frame)
        return True


def payload(frame: bytes) -> dict[str, Any]:
    n = frame[1] & 0x7F
    start = 2 if n < 126 else 4 if n == 126 else 10
    data: dict[str, Any] = json.loads(frame[start:])
    return data


def rec(sid: str, widget: str, seq: int) -> dict[str, Any]:
    return {"session_id": sid, "widget": widget, "version": seq, "timestamp": seq,
            "data_json": json.dumps({"n": seq}), "agent": None}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_text_frame_header_for_each_length_class(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    frame = text_frame(text)
    body = text.encode()
    assert frame[0] == 0x81  # FIN + text, no RSV bits (uncompressed)
    assert frame[1] & 0x80 == 0  # servers never mask
    if len(body) < 126:
        assert frame[1] == len(body) and frame[2:] == body
    elif len(body) < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == len(body)
        assert frame[4:] == body
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == len(body)
        assert frame[10:] == body


def _client(hub: Hub, metrics: GatewayMetrics, wire: Wire | None) -> tuple[Client, QueueSocket]:
    sock = QueueSocket()
    client = Client(sock, Principal("alice", Role.VIEWER), "s", metrics,
                    max_messages=64, max_bytes=1 << 20)
    client.direct = wire
    hub.join(client)
    return client, sock


async def test_one_frame_shared_by_every_client_and_order_kept_through_the_queue() -> None:
    store = WidgetStore()
    metrics = GatewayMetrics(CollectorRegistry())
    hub = Hub(store, metrics)
    store.apply_update(rec("s", "session_summary", 1))
    wires = [Wire(), Wire()]
    (_a, sock_a), (_b, sock_b) = (_client(hub, metrics, w) for w in wires)
    store.apply_update(rec("s", "cost", 2))
    assert [payload(f)["message_type"] for f in wires[0].frames] == ["snapshot", "widget_update"]
    # Written at once, no task: the same bytes object for both clients.
    assert wires[0].frames[1] is wires[1].frames[1]

    wires[0].room = False  # client a's socket is full: its messages queue...
    store.apply_update(rec("s", "cost", 3))
    wires[0].room = True  # ...and while anything is queued, later ones queue behind it
    store.apply_update(rec("s", "cost", 4))
    assert len(wires[0].frames) == 2
    for _ in range(3):
        await asyncio.sleep(0)
    assert [json.loads(m)["seq"] for m in sock_a.sent] == [3, 4]
    store.apply_update(rec("s", "cost", 5))  # queue empty again: direct
    assert payload(wires[0].frames[-1])["seq"] == 5
    assert [payload(f)["seq"] for f in wires[1].frames[1:]] == [2, 3, 4, 5]
    assert sock_b.sent == []
    assert metrics.sent._value.get() == 2 + 8  # two snapshots, four updates to each client


async def test_direct_writer_on_a_real_socket() -> None:
    """Frames written to aiohttp's transport reach a real client intact, and the writer
    stands down once the socket is closing."""
    writers: list[Any] = []
    closed = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        write = direct_writer(ws, request.transport)
        assert write is not None
        assert write(text_frame('{"n":1}')) and write(text_frame("x" * 70_000))
        await ws.send_str('{"n":2}')  # aiohttp's own frames interleave whole
        writers.append(write)
        async for _msg in ws:
            pass
        closed.set()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as http:
        ws = await http.ws_connect("/")
        assert (await ws.receive_json()) == {"n": 1}
        assert (await ws.receive_str()) == "x" * 70_000
        assert (await ws.receive_json()) == {"n": 2}
        await ws.close()
        await asyncio.wait_for(closed.wait(), 5)
        assert writers[0](text_frame("late")) is False


def test_no_direct_path_with_compression_or_without_a_transport() -> None:
    transport = asyncio.Transport()
    assert direct_writer(web.WebSocketResponse(compress=True), transport) is None
    assert direct_writer(web.WebSocketResponse(compress=False), None) is None


async def test_clients_with_the_same_filter_share_one_message() -> None:
    store = WidgetStore()
    metrics = GatewayMetrics(CollectorRegistry())
    hub = Hub(store, metrics)
    store.apply_update(rec("s", "session_summary", 1))
    wires = [Wire(), Wire(), Wire()]
    clients = [_client(hub, metrics, w)[0] for w in wires]
    clients[0].filters["error_log"] = {"severity": ("error",)}
    clients[1].filters["error_log"] = {"severity": ("error",)}
    clients[2].filters["error_log"] = {"severity": ("warning",)}
    errors = [{"severity": "error", "status": "open"}, {"severity": "warning", "status": "open"}]
    store.apply_update({**rec("s", "error_log", 2), "data_json": json.dumps({"errors": errors})})
    first, second, third = (w.frames[-1] for w in wires)
    assert first is second
    assert payload(first)["data"]["errors"] == [errors[0]]
    assert payload(third)["data"]["errors"] == [errors[1]]


def test_an_update_whose_data_is_not_a_json_object_is_sent_as_empty() -> None:
    store = WidgetStore()
    metrics = GatewayMetrics(CollectorRegistry())
    hub = Hub(store, metrics)
    store.apply_update(rec("s", "session_summary", 1))
    wire = Wire()
    _client(hub, metrics, wire)
    store.apply_update({**rec("s", "cost", 2), "data_json": '{"total_usd": 1'})
    store.apply_update({**rec("s", "cost", 3), "data_json": "[1, 2]"})
    assert [(payload(f)["seq"], payload(f)["data"]) for f in wire.frames[1:]] == [(2, {}), (3, {})]
