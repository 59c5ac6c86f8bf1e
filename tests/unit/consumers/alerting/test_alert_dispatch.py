from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from alerting_peers import alert
from prometheus_client import CollectorRegistry

from consumers.alerting.channels import TerminalChannel, slack_payload
from consumers.alerting.dispatch import DeadLetterFile, Dispatcher, DispatchMetrics, RecentIds
from consumers.alerting.testing import MemoryChannel


def dispatcher(tmp_path: Path, *channels: MemoryChannel, **kw: Any) -> Dispatcher:
    return Dispatcher(list(channels), DeadLetterFile(tmp_path / "dead.jsonl"),
                      DispatchMetrics(CollectorRegistry()), **kw)


async def test_each_alert_reaches_every_channel_once(tmp_path: Path) -> None:
    a, b = MemoryChannel("a"), MemoryChannel("b")
    d = dispatcher(tmp_path, a, b)
    for x in ("1", "2", "1", "2", "3"):
        await d.dispatch(alert(x))
    assert [x["alert_id"] for x in a.delivered] == ["1", "2", "3"]
    assert [x["alert_id"] for x in b.delivered] == ["1", "2", "3"]


async def test_refused_alerts_are_dead_lettered_per_channel(tmp_path: Path) -> None:
    ok, picky = MemoryChannel("ok"), MemoryChannel("picky", fail_ids={"2"})
    d = dispatcher(tmp_path, ok, picky)
    for x in ("1", "2"):
        await d.dispatch(alert(x))
    assert len(ok.delivered) == 2 and len(picky.delivered) == 1
    dead = DeadLetterFile(tmp_path / "dead.jsonl").read()
    assert [(x["channel"], x["alert"]["alert_id"]) for x in dead] == [("picky", "2")]  # type: ignore[index]
    assert "refuses 2" in str(dead[0]["error"])


async def test_alerts_below_min_severity_are_not_delivered(tmp_path: Path) -> None:
    ch = MemoryChannel()
    d = dispatcher(tmp_path, ch, min_severity="warning")
    await d.dispatch(alert("1", "info"))
    await d.dispatch(alert("2", "critical"))
    assert [x["alert_id"] for x in ch.delivered] == ["2"]


async def test_alerts_published_longer_ago_than_max_age_are_not_delivered(tmp_path: Path) -> None:
    ch = MemoryChannel()
    now_s = 1_800_000_000.0
    d = dispatcher(tmp_path, ch, max_age_s=3600, clock=lambda: now_s)
    hour_ms = 3_600_000
    results = [await d.dispatch(alert("old"), published_ms=int(now_s * 1000) - hour_ms - 1),
               await d.dispatch(alert("edge"), published_ms=int(now_s * 1000) - hour_ms),
               await d.dispatch(alert("unknown-time"), published_ms=None),
               await d.dispatch(alert("old"), published_ms=int(now_s * 1000))]
    assert results == [False, True, True, True]
    # The stale one is remembered as handled: its replay is a duplicate, not a delivery.
    assert [x["alert_id"] for x in ch.delivered] == ["edge", "unknown-time"]


async def test_max_age_zero_delivers_whatever_the_age(tmp_path: Path) -> None:
    ch = MemoryChannel()
    d = dispatcher(tmp_path, ch, max_age_s=0, clock=lambda: 1_800_000_000.0)
    assert await d.dispatch(alert("ancient"), published_ms=1)
    assert [x["alert_id"] for x in ch.delivered] == ["ancient"]


def test_recent_ids_forget_the_oldest() -> None:
    ids = RecentIds(2)
    for x in ("a", "b", "c"):
        ids.add(x)
    assert "a" not in ids and "b" in ids and "c" in ids and len(ids) == 2


async def test_terminal_prints_alert_and_mitigation() -> None:
    out = io.StringIO()
    await TerminalChannel(out).deliver(alert("1"))
    text = out.getvalue()
    assert text.startswith("[2023-11-14T22:13:20Z] WARNING compile_fix_loop session=s-1 agent=main:")
    assert "mitigation: pause it" in text and "evidence: e1, e2" in text


def test_slack_payload_has_fallback_text_and_blocks() -> None:
    body = slack_payload(alert("1"))
    assert body["text"] == "compile_fix_loop: 4 compile errors within 5 minutes"
    assert body["blocks"][0]["type"] == "section"
    assert "*Mitigation:* pause it" in body["blocks"][1]["text"]["text"]
    assert body["blocks"][-1]["type"] == "context"
