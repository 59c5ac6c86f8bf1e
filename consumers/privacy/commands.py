"""`agentwatch export`, `agentwatch delete`, `agentwatch privacy set|show`: privacy from a shell.

Each action is audited in ``audit_log`` (actor: ``--actor``, default the OS user) like the
gateway's endpoints; an erasure's audit row holds counts, never erased content.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.settings import Settings


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "privacy set":
        parser.add_argument("--user", required=True)
        parser.add_argument("--telemetry", choices=["enabled", "disabled", "minimal"])
        parser.add_argument("--retention-days", type=int,
                            help="keep this user's events this many days (0: deployment rules)")
    elif name == "privacy show":
        parser.add_argument("--user", required=True)
    else:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="everything about this user")
        who.add_argument("--session", help="one session")
        if name == "export":
            parser.add_argument("--out", required=True, type=Path,
                                help="folder for export.jsonl|csv and manifest.json")
            parser.add_argument("--format", choices=["json", "csv"], default="json")
        else:
            parser.add_argument("--no-kafka", action="store_true",
                                help="skip the tombstones on the compacted topics")
            parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--actor", help="who is doing this, for the audit log (default: OS user)")


def run(args: argparse.Namespace) -> int:
    from pipeline.migrations import client
    from pipeline.privacy import default_user_id
    from pipeline.settings import load_settings

    settings = load_settings()
    db = settings.clickhouse.database
    actor = args.actor or default_user_id() or "unknown"
    conn = client(settings.clickhouse, db)
    try:
        if args.command.startswith("privacy"):
            return _privacy(args, conn, db, actor)
        if args.command == "export":
            return _export(args, conn, db, actor)
        return _delete(args, settings, conn, db, actor)
    finally:
        conn.disconnect()


def _privacy(args: argparse.Namespace, conn: Any, db: str, actor: str) -> int:
    from consumers.privacy.service import insert_audit
    from pipeline.privacy import ConsentStore, Telemetry

    store = ConsentStore(conn, db)
    if args.command == "privacy show":
        pref = store.load_one(args.user)
        print(json.dumps(None if pref is None else {
            "user_id": pref.user_id, "telemetry": pref.telemetry.value,
            "retention_days": pref.retention_days, "updated_us": pref.updated_us,
            "updated_by": pref.updated_by}))
        return 0
    pref = store.set(args.user, telemetry=Telemetry(args.telemetry) if args.telemetry else None,
                     retention_days=args.retention_days, by=actor)
    insert_audit(conn, db, action="privacy.updated", access_type="cli_privacy", actor=actor,
                 role="operator", resource=f"user:{args.user} telemetry={pref.telemetry.value} "
                 f"retention_days={pref.retention_days}")
    print(f"{args.user}: telemetry {pref.telemetry.value}, retention_days {pref.retention_days}"
          " (collectors apply it within privacy.refresh_s)")
    return 0


def _export(args: argparse.Namespace, conn: Any, db: str, actor: str) -> int:
    import time

    from consumers.privacy.erase import Subject, user_sessions
    from consumers.privacy.export import ExportManifest, ExportWriter, records
    from consumers.privacy.service import insert_audit

    subject = Subject(user=args.user, session=args.session)
    sessions = sorted({args.session} if args.session else set(user_sessions(conn, db, args.user)))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest = ExportManifest(subject.describe(), args.format, sessions,
                              generated_at_us=time.time_ns() // 1000)
    writer = ExportWriter(args.format, manifest)
    name = "export.jsonl" if args.format == "json" else "export.csv"
    with (out / name).open("wb") as f:
        f.write(writer.header())
        for record_type, row in records(conn, db, subject, sessions):
            f.write(writer.record(record_type, row))
    summary = writer.finish()
    summary["file"] = name
    (out / "manifest.json").write_text(json.dumps(summary, indent=2) + "\n")
    insert_audit(conn, db, action="telemetry.exported", access_type="cli_export", actor=actor,
                 role="operator", resource=subject.describe(), session_id=args.session or "")
    print(json.dumps({"out": str(out), "records": summary["records"], "counts": summary["counts"]}))
    return 0


def _delete(args: argparse.Namespace, settings: Settings, conn: Any, db: str, actor: str) -> int:
    from consumers.privacy.erase import Subject
    from consumers.privacy.service import archive_target, eraser, insert_audit

    subject = Subject(user=args.user, session=args.session)
    if not args.yes:
        if not sys.stdin.isatty():
            print("agentwatch delete: pass --yes to erase without a terminal", file=sys.stderr)
            return 2
        answer = input(f"erase all telemetry of {subject.describe()}? type 'yes': ")
        if answer.strip() != "yes":
            return 1
    target = archive_target(settings)
    report = eraser(settings, conn, target, kafka=not args.no_kafka).erase(subject)
    summary = report.summary()
    insert_audit(conn, db, action="telemetry.deleted", access_type="cli_delete", actor=actor,
                 role="operator", resource=json.dumps(summary, separators=(",", ":")),
                 session_id=args.session or "", status=200 if report.verified else 500)
    print(json.dumps(summary))
    return 0 if report.verified else 1
