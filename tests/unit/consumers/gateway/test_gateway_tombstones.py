"""Erasure tombstones on the widgets topic remove state from the gateway's store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.gateway.auth import Principal, Role
from consumers.gateway.hub import CLOSE_ERASED, Client, Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.state import WidgetStore


def update(sid: str, widget: str, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": sid, "widget": widget, "version": seq, "timestamp": seq,
            "data_json": json.dumps(data), "agent": "claude-code"}


def test_the_session_goes_once_its_last_worker_widget_is_tombstoned() -> None:
    store = WidgetStore()
    store.apply_update(update("s1", "session_summary", 1, {"user_id": "alice"}))
    store.apply_update(update("s1", "cost", 2, {"cost_usd": 1.0}))
    store.apply_update(update("s2", "cost", 1, {"cost_usd": 2.0}))
    store.apply_alert({"session_id": "s1", "alert_id": "a1", "pattern": "retry_storm"})
    assert store.remove_widget("s1", "session_summary")
    assert "s1" in store.sessions and "session_summary" not in store.sessions["s1"].widgets
    assert store.remove_widget("s1", "cost")
    assert "s1" not in store.sessions  # only the synthetic alerts widget was left
    assert not store.remove_widget("s1", "cost")  # idempotent
    assert set(store.sessions) == {"s2"}
    assert store.forget_session("s2") and not store.sessions


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.sent.append(json.loads(data))

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closed_with = code
        return True


async def test_an_erased_session_disconnects_its_viewers_and_leaves_the_overview() -> None:
    store = WidgetStore()
    metrics = GatewayMetrics(CollectorRegistry())
    hub = Hub(store, metrics)
    for sid in ("s1", "s2"):
        store.apply_update(update(sid, "session_summary", 1, {"user_id": "alice"}))
    viewer, overview = FakeSocket(), FakeSocket()
    hub.join(Client(viewer, Principal("alice", Role.VIEWER), "s1", metrics,
                    max_messages=64, max_bytes=1 << 20))
    hub.join(Client(overview, Principal("alice", Role.VIEWER), None, metrics,
                    max_messages=64, max_bytes=1 << 20))
    for _ in range(5):
        await asyncio.sleep(0)
    store.forget_session("s1")
    await hub.session_erased("s1")
    for _ in range(5):
        await asyncio.sleep(0)
    assert viewer.closed_with == CLOSE_ERASED
    lists = [m for m in overview.sent if m["message_type"] == "session_list"]
    assert [s["session_id"] for s in lists[-1]["sessions"]] == ["s2"]
