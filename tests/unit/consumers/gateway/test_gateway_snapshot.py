"""The snapshot message, with stored widget JSON spliced in: the same message the plain encoder
would build, filters applied, for unknown sessions too."""

from __future__ import annotations

import json
from typing import Any

from consumers.gateway import protocol
from consumers.gateway.state import WIDGETS, WidgetStore

ERRORS = {"errors": [{"severity": "error", "agent": "a", "status": "open", "msg": "é\u2028 \" </"},
                     {"severity": "warning", "agent": "b", "status": "open"}], "open": 2}


def expected(store: WidgetStore, sid: str, widgets: tuple[str, ...],
             filters: dict[str, dict[str, tuple[str, ...]]], resync: bool) -> dict[str, Any]:
    session = store.get(sid)
    out: dict[str, Any] = {}
    if session is not None:
        for name in widgets:
            if name in session.widgets:
                state = session.widgets[name]
                data = (protocol.apply_filter(name, state.data, filters[name]) if name in filters
                        else state.data)
                out[name] = {"data": data, "seq": state.seq, "timestamp": state.timestamp}
    return {"message_type": "snapshot", "session_id": sid, "widgets": out,
            "seq": session.last_seq if session else 0, "resync": resync,
            "overview": session.overview() if session else None}


def test_snapshot_is_the_plain_encoding() -> None:
    store = WidgetStore()
    for seq, (widget, data) in enumerate([
            ("session_summary", {"user_id": "alice", "events": 3}), ("error_log", ERRORS),
            ("cost", {"total_usd": 0.5})], start=1):
        store.apply_update({"session_id": "s", "widget": widget, "version": seq,
                            "timestamp": seq * 10, "data_json": json.dumps(data), "agent": "a"})
    store.apply_alert({"session_id": "s", "alert_id": "x", "pattern": "p", "detected_at": 5})
    cases: list[tuple[str, tuple[str, ...], dict[str, dict[str, tuple[str, ...]]], bool]] = [
        ("s", WIDGETS, {}, False),
        ("s", ("error_log", "cost", "agent_timeline"), {"error_log": {"severity": ("error",)}}, True),
        ("s", (), {}, False),
        ("unknown", WIDGETS, {}, False),
    ]
    for sid, widgets, filters, resync in cases:
        text = protocol.snapshot(store.get(sid), sid, widgets, filters, resync=resync)
        assert json.loads(text) == expected(store, sid, widgets, filters, resync)
    filtered = json.loads(protocol.snapshot(store.get("s"), "s", ("error_log",),
                                            {"error_log": {"severity": ("error",)}}))
    assert [e["severity"] for e in filtered["widgets"]["error_log"]["data"]["errors"]] == ["error"]
