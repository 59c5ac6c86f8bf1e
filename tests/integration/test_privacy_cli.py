"""`agentwatch privacy set|show`, `export --user` and `delete --session` against real services."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from consumers.archive.layout import segment_key
from consumers.archive.targets import FileTarget
from consumers.clickhouse.rows import EVENT_COLUMNS, event_row
from consumers.privacy.erase import WIDGET_NAMES, changelog_topics
from pipeline.cli import main
from pipeline.migrations import apply_migrations, client
from pipeline.model import new_event
from pipeline.settings import ClickHouseSettings

pytestmark = pytest.mark.integration


def test_cli_consent_export_and_session_erasure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        kafka_bootstrap: str, kafka_topic: Callable[..., str], clickhouse: ClickHouseSettings,
        clickhouse_db: str, unique_name: Callable[[str], str]) -> None:
    apply_migrations(clickhouse, clickhouse_db)
    conn = client(clickhouse, clickhouse_db)
    s1, s2 = unique_name("s1"), unique_name("s2")
    events = [new_event("notification", sid, {"message": f"m{i}"}, metadata={"user_id": "dana"})
              for sid in (s1, s2) for i in range(3)]
    conn.execute(f"INSERT INTO telemetry_events ({', '.join(EVENT_COLUMNS)}) VALUES",
                 [event_row(e, "agent.telemetry.events", 0, i) for i, e in enumerate(events)])
    target = FileTarget(tmp_path / "archive")
    target.put(segment_key(s1, 0, 0), b"x")
    target.put(segment_key(s2, 0, 0), b"y")
    app_id = unique_name("cliworker")
    changelogs = changelog_topics(app_id)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=1,
                                                config={"cleanup.policy": "compact"})
                                       for t in changelogs]).values():
        future.result(30)
    for key, value in {"KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
                       "CLICKHOUSE__DATABASE": clickhouse_db,
                       "ARCHIVE__TARGET": target.describe(),
                       "TOPICS__WIDGETS": kafka_topic("cli.widgets", partitions=1),
                       "WORKER__APP_ID": app_id}.items():
        monkeypatch.setenv(f"AGENTWATCH_{key}", value)
    try:
        assert main(["privacy", "set", "--user", "dana", "--telemetry", "minimal",
                     "--actor", "ops"]) == 0
        assert main(["privacy", "show", "--user", "dana"]) == 0
        shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert shown["telemetry"] == "minimal" and shown["updated_by"] == "ops"

        out = tmp_path / "export"
        assert main(["export", "--user", "dana", "--out", str(out), "--actor", "ops"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["counts"]["event"] == 6 and manifest["sessions"] == sorted([s1, s2])
        assert manifest["counts"]["privacy_setting"] == 1
        lines = (out / "export.jsonl").read_bytes()
        assert hashlib.sha256(lines).hexdigest() == manifest["sha256"]

        assert main(["delete", "--session", s1, "--yes", "--actor", "ops"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["verified"] and summary["archive_objects"] == 1
        assert summary["clickhouse_rows"]["telemetry_events"] == 3
        # Every widget key on the one widgets partition, the state key on each changelog's two.
        assert summary["tombstones"] == len(WIDGET_NAMES) + 2 * len(changelogs)
        for topic in changelogs:
            records = _read_all(kafka_bootstrap, topic, 2)
            assert sorted((p, k, v) for p, k, v in records) == [
                (0, json.dumps(s1).encode(), None), (1, json.dumps(s1).encode(), None)]
        left = conn.execute("SELECT session_id, count() FROM telemetry_events GROUP BY session_id")
        assert dict(left) == {s2: 3}
        assert target.list_keys("") == [segment_key(s2, 0, 0)]
        audit = [r[0] for r in conn.execute(
            "SELECT action FROM audit_log WHERE user_id = 'ops' ORDER BY at_us")]
        assert audit == ["privacy.updated", "telemetry.exported", "telemetry.deleted"]

        # A user's own retention choice is applied by `retention apply` (info rows: 30 days).
        ten_days_ago = (int(time.time()) - 10 * 86_400) * 1_000_000
        old = [new_event("notification", sid, {"message": "old"}, timestamp_us=ten_days_ago,
                         severity="info", metadata={"user_id": user})
               for sid, user in ((unique_name("s3"), "dana"), (unique_name("s4"), "erin"))]
        conn.execute(f"INSERT INTO telemetry_events ({', '.join(EVENT_COLUMNS)}) VALUES",
                     [event_row(e, "agent.telemetry.events", 1, i) for i, e in enumerate(old)])
        assert main(["privacy", "set", "--user", "dana", "--retention-days", "3"]) == 0
        assert main(["retention", "apply"]) == 0
        kept = {r[0] for r in conn.execute("SELECT event_id FROM telemetry_events")}
        assert str(old[0]["event_id"]) not in kept and str(old[1]["event_id"]) in kept
        assert len(kept) == 4  # s2's three and erin's old one
    finally:
        conn.disconnect()
        for future in admin.delete_topics(changelogs).values():
            future.result(30)


def _read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[tuple[int, bytes, bytes | None]] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                if not msg.error():
                    out.append((msg.partition(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return out
