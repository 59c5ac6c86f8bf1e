"""Partitions added to the widgets topic while the gateway runs are read without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from confluent_kafka.admin import AdminClient, NewPartitions  # type: ignore[attr-defined]
from gateway_support import GatewayUnderTest, receive_json, receive_until, widget_record

pytestmark = pytest.mark.integration


def _grow(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_partitions([NewPartitions(topic, partitions)])[topic].result()
    # A fresh producer must see the new partition in its metadata before it may write to it.
    deadline = time.monotonic() + 30
    while len(admin.list_topics(topic, timeout=10).topics[topic].partitions) < partitions:
        assert time.monotonic() < deadline, "new partition not in the metadata"
        time.sleep(0.2)


async def test_partition_added_while_running_is_read(
        start_gateway: Callable[..., Any], unique_name: Callable[[str], str]) -> None:
    gut: GatewayUnderTest = await start_gateway(partitions=1, partition_refresh_s=0.5)
    old_sid, new_sid = unique_name("old"), unique_name("new")
    owner = {"user_id": "alice"}
    gut.produce([widget_record(old_sid, "session_summary", 1, owner)], partition_of=lambda _s: 0)
    await gut.wait_caught_up()
    await gut.wait_for("first session", lambda: gut.gw.store.get(old_sid) is not None)
    feed = gut.gw.feed
    assert feed is not None and feed.status.partitions == 1

    _grow(gut.bootstrap, gut.widgets_topic, 2)
    gut.produce([widget_record(new_sid, "session_summary", 1, owner),
                 widget_record(new_sid, "cost", 2, {"total_usd": 0.25})],
                partition_of=lambda _s: 1)
    await gut.wait_for("the session on the new partition",
                       lambda: (s := gut.gw.store.get(new_sid)) is not None and s.last_seq == 2)
    assert feed.status.partitions == 2

    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gut.ws_url}/sessions/{new_sid}", headers=gut.headers("alice")) as ws:
        snap = await receive_json(ws)
        assert snap["message_type"] == "snapshot" and snap["seq"] == 2
        assert snap["widgets"]["cost"]["data"] == {"total_usd": 0.25}
        # Both partitions stay live after the reassignment: the old one keeps its position
        # (no re-read from the beginning, so no duplicate counted), the new one goes on.
        stale_before = gut.gw.store.duplicates
        gut.produce([widget_record(new_sid, "cost", 3, {"total_usd": 0.5})],
                    partition_of=lambda _s: 1)
        gut.produce([widget_record(old_sid, "cost", 2, {"total_usd": 1.0})],
                    partition_of=lambda _s: 0)
        upd, _ = await receive_until(ws, lambda m: m["message_type"] == "widget_update")
        assert (upd["seq"], upd["data"]) == (3, {"total_usd": 0.5})
        await gut.wait_for("the old partition still read",
                           lambda: (s := gut.gw.store.get(old_sid)) is not None and s.last_seq == 2)
        assert gut.gw.store.duplicates == stale_before
