"""Replay-view widget updates: routed to the replay's user only, never into the live state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.gateway.auth import Principal, Role
from consumers.gateway.hub import Client, Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.replays import Replay, ReplayManager
from consumers.gateway.state import WidgetStore
from pipeline.replays import view_session_id


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.sent.append(json.loads(data))

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        return True


def update(sid: str, widget: str, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": sid, "widget": widget, "version": seq, "timestamp": 1000 + seq,
            "data_json": json.dumps(data), "agent": "main"}


async def drain() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_replay_widgets_reach_the_starting_users_clients_only() -> None:
    store = WidgetStore()
    metrics = GatewayMetrics(CollectorRegistry())
    hub = Hub(store, metrics)
    store.apply_update(update("s", "session_summary", 1, {"user_id": "alice", "events": 9}))
    sockets = {who: FakeSocket() for who in ("alice", "admin")}
    for who, sock in sockets.items():
        role = Role.ADMIN if who == "admin" else Role.VIEWER
        hub.join(Client(sock, Principal(who, role), "s", metrics, max_messages=64,
                        max_bytes=1 << 20))
    manager = ReplayManager(lambda _sid: ([], ""), hub.broadcast_session,
                            send_to_user=hub.send_to_user)
    rep = Replay("r1", "s", "alice", 1.0, None, None)
    manager.replays[rep.replay_id] = rep
    view = view_session_id("r1")
    await drain()
    before = {who: len(sock.sent) for who, sock in sockets.items()}

    manager.on_widget_update(update(view, "cost", 1, {"total_usd": 0.5}))
    manager.on_widget_update(update(view, "cost", 1, {"total_usd": 0.5}))  # re-read: dropped
    manager.on_widget_update(update(view, "cost", 2, {"total_usd": 0.7}))
    manager.on_widget_update(update(view_session_id("other"), "cost", 5, {"total_usd": 9}))
    await drain()

    got = sockets["alice"].sent[before["alice"]:]
    assert [(m["message_type"], m["session_id"], m["replay_id"], m["seq"], m["data"])
            for m in got] == [("widget_update", view, "r1", 1, {"total_usd": 0.5}),
                              ("widget_update", view, "r1", 2, {"total_usd": 0.7})]
    assert sockets["admin"].sent[before["admin"]:] == []
    assert rep.widgets == {"cost": {"data": {"total_usd": 0.7}, "seq": 2, "timestamp": 1002}}
    assert rep.describe()["view_session_id"] == view
    # The live state never saw any of it.
    assert set(store.sessions) == {"s"}
    assert json.loads(store.sessions["s"].widgets["session_summary"].data_json)["events"] == 9


def test_the_feed_hands_replay_views_to_the_replays_and_live_sessions_to_the_store() -> None:
    from types import SimpleNamespace

    from consumers.gateway.feed import WidgetFeed
    from pipeline.model import WIDGET_UPDATE
    from pipeline.serde import AvroSerde
    from pipeline.settings import KafkaSettings

    serde = AvroSerde()
    store = WidgetStore()
    feed = WidgetFeed(KafkaSettings(), "w", None, store=store, serde=serde,
                      metrics=GatewayMetrics(CollectorRegistry()))
    routed: list[dict[str, Any]] = []
    feed.on_replay_update = routed.append
    view = view_session_id("r9")

    def msg(record: dict[str, Any] | None, key: bytes) -> Any:
        value = serde.encode(WIDGET_UPDATE, record) if record is not None else None
        return SimpleNamespace(topic="w", partition=0, offset=0, key=key, value=value,
                               timestamp=None)

    feed._apply(msg(update("live", "cost", 1, {"total_usd": 1.0}), b"live/cost"))
    feed._apply(msg(update(view, "cost", 1, {"total_usd": 1.0}), f"{view}/cost".encode()))
    feed._apply(msg(None, f"{view}/cost".encode()))  # the view's tombstone
    assert set(store.sessions) == {"live"}
    assert [r["session_id"] for r in routed] == [view]
