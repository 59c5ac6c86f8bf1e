"""Erasure tombstones on the widgets topic remove state from the gateway's store."""

from __future__ import annotations

import json
from typing import Any

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
