"""Client queues: in order for a client that keeps up, coalesced when slow, dropped past the
bound; the store's duplicate and gap rules; filters; rate limiter with a fake clock."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumers.gateway import protocol
from consumers.gateway.auth import Principal, Role
from consumers.gateway.hub import CLOSE_TOO_SLOW, COALESCE_AFTER, Client, Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.ratelimit import RateLimiter
from consumers.gateway.state import WidgetStore


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.closed_with: int | None = None

    async def send_str(self, data: str, compress: int | None = None) -> None:
        await self.gate.wait()
        self.sent.append(json.loads(data))

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closed_with = code
        return True


def rec(sid: str, widget: str, seq: int, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"session_id": sid, "widget": widget, "version": seq, "timestamp": seq,
            "data_json": json.dumps(data or {"n": seq}), "agent": None}


def setup(max_messages: int = 64, max_bytes: int = 1 << 20) -> tuple[WidgetStore, Hub, Client, FakeSocket]:
    store = WidgetStore()
    metrics = GatewayMetrics(CollectorRegistry())
    hub = Hub(store, metrics)
    store.apply_update(rec("s", "session_summary", 1, {"user_id": "alice"}))
    sock = FakeSocket()
    client = Client(sock, Principal("alice", Role.VIEWER), "s", metrics,
                    max_messages=max_messages, max_bytes=max_bytes)
    hub.join(client)
    return store, hub, client, sock


async def drain() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_client_that_keeps_up_gets_everything_in_order() -> None:
    store, _hub, _client, sock = setup()
    for seq in range(2, 12):
        store.apply_update(rec("s", "cost", seq))
    await drain()
    assert sock.sent[0]["message_type"] == "snapshot"
    assert [m["seq"] for m in sock.sent[1:]] == list(range(2, 12))


async def test_a_slow_client_gets_coalesced_latest_states_in_sequence_order() -> None:
    store, _hub, client, sock = setup()
    await drain()
    sock.gate.clear()  # the peer stops reading
    seq = 1
    for i in range(COALESCE_AFTER * 3):
        seq += 1
        store.apply_update(rec("s", "cost" if i % 2 else "error_log", seq, {"i": i}))
    assert client.queued <= COALESCE_AFTER + 2
    sock.gate.set()
    await drain()
    updates = [m for m in sock.sent if m["message_type"] == "widget_update"]
    seqs = [m["seq"] for m in updates]
    assert seqs == sorted(seqs)
    last = {m["widget"]: m["data"]["i"] for m in updates}
    assert last == {"cost": COALESCE_AFTER * 3 - 1, "error_log": COALESCE_AFTER * 3 - 2}
    assert client.metrics.coalesced._value.get() > 0


async def test_a_client_past_the_bound_is_dropped_and_its_queue_freed() -> None:
    store, hub, client, sock = setup(max_messages=20)
    await drain()
    sock.gate.clear()
    for seq in range(2, 40):
        store.apply_update(rec(f"other-{seq}", "cost", seq))  # not its session: ignored
        hub.broadcast_session("s", protocol.message("replay_event", n=seq))  # never coalesced
    await drain()
    assert client.dropped and client.queued == 0
    sock.gate.set()
    await drain()
    assert sock.closed_with == CLOSE_TOO_SLOW
    assert client.metrics.dropped_clients._value.get() == 1


def test_store_ignores_stale_and_flags_gaps_only_on_live_partitions() -> None:
    store = WidgetStore()
    assert store.apply_update(rec("s", "cost", 5)) is not None
    assert store.apply_update(rec("s", "cost", 5)) is None
    assert store.apply_update(rec("s", "cost", 4)) is None
    change = store.apply_update(rec("s", "error_log", 20))
    assert change is not None and not change.gap  # partition 0 still catching up
    store.live_partitions.add(0)
    assert not store.apply_update(rec("s", "cost", 21)).gap  # type: ignore[union-attr]
    assert store.apply_update(rec("s", "cost", 1021)).gap  # type: ignore[union-attr]


def test_owner_is_the_first_summary_user() -> None:
    store = WidgetStore()
    store.apply_update(rec("s", "session_summary", 1, {"user_id": None}))
    assert store.sessions["s"].owner is None
    store.apply_update(rec("s", "session_summary", 2, {"user_id": "alice"}))
    store.apply_update(rec("s", "session_summary", 3, {"user_id": "mallory"}))
    assert store.sessions["s"].owner == "alice"


def test_filter_narrows_the_list_and_recounts_open() -> None:
    data: dict[str, Any] = {"errors": [{"severity": "error", "agent": "a", "status": "open"},
                       {"severity": "warning", "agent": "b", "status": "open"},
                       {"severity": "error", "agent": "b", "status": "resolved"}], "open": 2}
    out = protocol.apply_filter("error_log", data, {"severity": ("error",), "agent": ("b",)})
    assert out["errors"] == [data["errors"][2]] and out["open"] == 0 and out["filtered"]


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"action":1}', '{"action":"subscribe"}',
                                  '{"action":"subscribe","widgets":["x"]}',
                                  '{"action":"filter","widget":"error_log","criteria":[1]}',
                                  "x" * (protocol.MAX_CLIENT_MESSAGE + 1)])
def test_bad_client_messages_are_protocol_errors(text: str) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_action(text)


def test_rate_limiter_buckets_per_key_with_retry_after() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("u")
    assert wait == pytest.approx(0.5)
    assert RateLimiter.retry_after_header(wait) == "1"
    assert limiter.take("v") == 0.0
    now[0] = 0.5
    assert limiter.take("u") == 0.0
