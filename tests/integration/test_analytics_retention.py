"""`agentwatch retention apply` and the erasure building blocks against real ClickHouse.

Each test migrates its own database and loads rows whose ages are chosen around the retention
rules (debug 7 days, info 30, warning 90, error 365, critical forever; user overrides), with
``now`` fixed so the expected removals can be worked out by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.clickhouse.retention import Removal, Retention
from consumers.clickhouse.rows import EVENT_COLUMNS, event_row
from pipeline.migrations import apply_migrations, client
from pipeline.model import new_event
from pipeline.settings import ClickHouseSettings, RetentionSettings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def part(days: int) -> str:
    return ago(days).strftime("%Y%m%d")


def event(eid: str, days: int, severity: str, session: str = "sess-1",
          user: str | None = None) -> dict[str, Any]:
    return new_event("notification", session, {"message": eid}, event_id=eid, severity=severity,
                     timestamp_us=int(ago(days).timestamp()) * 1_000_000,
                     metadata={"user_id": user} if user else None)


EVENTS = [
    event("old-debug", 100, "debug"), event("old-info", 100, "info"),   # whole day expired
    event("w40-info", 40, "info"), event("w40-warning", 40, "warning"),  # info goes
    event("d10-debug", 10, "debug"), event("d10-info", 10, "info"),      # debug goes
    event("y400-error", 400, "error"), event("y400-critical", 400, "critical"),  # error goes
    event("bob-debug", 200, "debug", session="sess-bob", user="bob"),   # bob keeps everything
    event("alice-info", 5, "info", session="sess-alice", user="alice"),  # alice: 3 days
    event("alice-new", 1, "info", session="sess-alice", user="alice"),
    event("recent", 1, "info"),
]
CFG = RetentionSettings(user_days={"bob": 0, "alice": 3})


def _insert_others(conn: Any) -> None:
    def alert(aid: str, days: int, severity: str) -> tuple[Any, ...]:
        t = ago(days)
        us = int(t.timestamp()) * 1_000_000
        return (t, us, aid, "retry_storm", "sess-1", "claude-code", severity, t, us, us, [],
                "m", "", "agent.telemetry.patterns", 0, 0)

    conn.execute(
        "INSERT INTO pattern_alerts (detected_at, detected_us, alert_id, pattern, session_id, "
        "agent, severity, window_start, window_start_us, window_end_us, evidence_event_ids, "
        "message, suggested_mitigation, kafka_topic, kafka_partition, kafka_offset) VALUES",
        [alert("al-old", 100, "warning"), alert("al-new", 10, "warning")])

    def letter(days: int, session: str) -> tuple[Any, ...]:
        t = ago(days)
        return (t, int(t.timestamp()) * 1_000_000, "validate", "decode_error", "bad", "ingest",
                0, 0, 1, session, "", "", "", 0, "agent.telemetry.dlq", 0, 0)

    conn.execute(
        "INSERT INTO dead_letters (first_seen, first_seen_us, stage, error_kind, error_message, "
        "source_topic, source_partition, source_offset, attempts, session_id, event_id, "
        "original_text, original_bytes, original_truncated, kafka_topic, kafka_partition, "
        "kafka_offset) VALUES", [letter(40, "sess-1"), letter(1, "sess-alice")])

    def session(sid: str, days: int, version: int = 1) -> tuple[Any, ...]:
        t = ago(days)
        us = int(t.timestamp()) * 1_000_000
        return (sid, "claude-code", t, us, t, us, version)

    conn.execute(
        "INSERT INTO sessions (session_id, agent, started_at, started_us, last_event_at, "
        "last_event_us, version) VALUES",
        # sess-1's newer version is recent: only sess-gone's last event is over a year old.
        [session("sess-1", 400, 1), session("sess-1", 1, 2), session("sess-gone", 400),
         session("sess-alice", 1)])


@pytest.fixture
def db(clickhouse: ClickHouseSettings) -> Iterator[tuple[Any, str]]:
    import uuid

    name = f"retention_{uuid.uuid4().hex[:10]}"
    apply_migrations(clickhouse, name)
    conn = client(clickhouse, name)
    rows = [event_row(e, "agent.telemetry.events", 0, i) for i, e in enumerate(EVENTS)]
    conn.execute(f"INSERT INTO telemetry_events ({', '.join(EVENT_COLUMNS)}) VALUES", rows)
    _insert_others(conn)
    try:
        yield conn, name
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.disconnect()


def event_ids(conn: Any) -> set[str]:
    return {r[0] for r in conn.execute("SELECT event_id FROM telemetry_events")}


EXPECTED = [
    Removal("telemetry_events", "delete_rows", part(400), 1),      # the error; critical stays
    Removal("telemetry_events", "drop_partition", part(100), 2),
    Removal("telemetry_events", "delete_rows", part(40), 1),
    Removal("telemetry_events", "delete_rows", part(10), 1),
    Removal("telemetry_events", "drop_partition", part(5), 1),     # alice: 3 days
    Removal("pattern_alerts", "drop_partition", part(100), 1),     # warning: 90 days
    Removal("dead_letters", "drop_partition", part(40), 1),        # 30 days
    Removal("sessions", "delete_rows", "last event over 365 days ago", 1),  # sess-gone only
]


def test_dry_run_reports_and_removes_nothing(db: tuple[Any, str]) -> None:
    conn, name = db
    now_s = int(NOW.timestamp())
    assert Retention(conn, name, CFG, now_s=now_s).plan_and_apply(dry_run=True) == EXPECTED
    assert event_ids(conn) == {e["event_id"] for e in EVENTS}


def test_apply_drops_expired_days_and_deletes_expired_rows(db: tuple[Any, str]) -> None:
    conn, name = db
    now_s = int(NOW.timestamp())
    assert Retention(conn, name, CFG, now_s=now_s).plan_and_apply() == EXPECTED
    assert event_ids(conn) == {"w40-warning", "d10-info", "y400-critical", "bob-debug",
                               "alice-new", "recent"}
    assert {r[0] for r in conn.execute("SELECT alert_id FROM pattern_alerts")} == {"al-new"}
    assert conn.execute("SELECT session_id FROM dead_letters") == [("sess-alice",)]
    assert sorted(r[0] for r in conn.execute("SELECT DISTINCT session_id FROM sessions")) == [
        "sess-1", "sess-alice"]
    # Nothing left to do: a second run removes nothing.
    assert Retention(conn, name, CFG, now_s=now_s).plan_and_apply() == []


def test_without_overrides_every_severity_rule_applies(db: tuple[Any, str]) -> None:
    conn, name = db
    cfg = RetentionSettings(critical_days=300)
    removals = Retention(conn, name, cfg, now_s=int(NOW.timestamp())).plan_and_apply()
    assert removals[0] == Removal("telemetry_events", "drop_partition", part(400), 2)
    assert "bob-debug" not in event_ids(conn)        # debug after 7 days, bob has no override
    assert "alice-info" in event_ids(conn)           # info keeps 30 days


def test_delete_sessions_and_user_remove_every_trace(db: tuple[Any, str]) -> None:
    conn, name = db
    retention = Retention(conn, name, CFG, now_s=int(NOW.timestamp()))
    removals = retention.delete_user("alice")
    assert removals == [
        Removal("telemetry_events", "delete_rows", "1 session(s)", 2),
        Removal("sessions", "delete_rows", "1 session(s)", 1),
        Removal("pattern_alerts", "delete_rows", "1 session(s)", 0),
        Removal("dead_letters", "delete_rows", "1 session(s)", 1),
    ]
    for table in ("telemetry_events", "sessions", "dead_letters"):
        assert conn.execute(f"SELECT count() FROM {table} WHERE session_id = 'sess-alice'") == [
            (0,)]
    assert retention.delete_user("alice") == []  # idempotent
    removals = retention.delete_sessions(["sess-1"])
    assert [(r.table, r.rows) for r in removals] == [
        ("telemetry_events", 9), ("sessions", 2), ("pattern_alerts", 2), ("dead_letters", 1)]
    assert event_ids(conn) == {"bob-debug"}


def test_cli_dry_run(db: tuple[Any, str], clickhouse: ClickHouseSettings,
                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    _, name = db
    monkeypatch.setenv("AGENTWATCH_CLICKHOUSE__HOST", clickhouse.host)
    monkeypatch.setenv("AGENTWATCH_CLICKHOUSE__PORT", str(clickhouse.port))
    monkeypatch.setenv("AGENTWATCH_CLICKHOUSE__DATABASE", name)
    monkeypatch.setenv("AGENTWATCH_RETENTION__CRITICAL_DAYS", "1")
    assert main(["retention", "apply", "--dry-run", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # Relative to the real clock every fixture row is older than a day: with critical at 1 day
    # and no user overrides, everything but the events of the last 7 days goes.
    assert {"table": "telemetry_events", "action": "drop_partition", "target": part(400),
            "rows": 2} in rows
    assert len(event_ids(db[0])) == len(EVENTS)
