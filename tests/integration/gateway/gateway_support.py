"""Helpers of the gateway integration tests: the gateway under test, records, receiving."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from confluent_kafka import Producer

from consumers.gateway.auth import Authenticator, Role
from consumers.gateway.context import GATEWAY, Gateway
from pipeline.model import PATTERN_ALERT, WIDGET_UPDATE
from pipeline.serde import AvroSerde
from pipeline.settings import Settings

SECRET = "integration-test-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def widget_record(session_id: str, widget: str, seq: int, data: dict[str, Any],
                  ts: int | None = None) -> dict[str, Any]:
    return {"session_id": session_id, "widget": widget,
            "data_json": json.dumps(data, separators=(",", ":")), "version": seq,
            "timestamp": ts if ts is not None else time.time_ns() // 1000, "agent": "claude-code"}


@dataclass
class GatewayUnderTest:
    url: str
    settings: Settings
    app: web.Application
    widgets_topic: str
    patterns_topic: str
    bootstrap: str
    serde: AvroSerde = field(default_factory=AvroSerde)

    @property
    def gw(self) -> Gateway:
        return self.app[GATEWAY]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def token(self, user: str, role: str = "viewer", ttl: int = 600, **kw: Any) -> str:
        auth = Authenticator(self.settings.gateway, SECRET)
        return auth.mint(user, Role(role), ttl, **kw)

    def headers(self, user: str, role: str = "viewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, role)}"}

    def produce(self, records: list[dict[str, Any]], partition_of: Callable[[str], int] | None = None
                ) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        for rec in records:
            name = PATTERN_ALERT if "alert_id" in rec else WIDGET_UPDATE
            topic = self.patterns_topic if name == PATTERN_ALERT else self.widgets_topic
            key = (rec["session_id"] if name == PATTERN_ALERT
                   else f"{rec['session_id']}/{rec['widget']}").encode()
            # Like the worker: every widget of a session on one partition (crc32 of the session).
            where = partition_of or (lambda sid: zlib.crc32(sid.encode()) % self.settings.topics.partitions)
            producer.produce(topic, key=key, value=self.serde.encode(name, rec),
                             partition=where(rec["session_id"]))
        assert producer.flush(30) == 0

    async def wait_caught_up(self, within: float = 30.0) -> None:
        feed = self.gw.feed
        assert feed is not None
        await asyncio.wait_for(feed.status.caught_up_event.wait(), within)

    async def wait_for(self, what: str, cond: Callable[[], bool], within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)


GatewayFactory = Callable[..., "asyncio.Future[GatewayUnderTest]"]


async def receive_json(ws: aiohttp.ClientWebSocketResponse, within: float = 15.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=within)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def receive_until(ws: aiohttp.ClientWebSocketResponse, cond: Callable[[dict[str, Any]], bool],
                        within: float = 20.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Messages until one satisfies ``cond``: (that message, everything received before it)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching message; got {[m.get('message_type') for m in seen]}")
        msg = await receive_json(ws, remaining)
        if cond(msg):
            return msg, seen
        seen.append(msg)
