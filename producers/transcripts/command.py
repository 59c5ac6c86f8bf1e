"""`agentwatch import PATH...`: backfill sessions from Claude Code transcripts.

    agentwatch import ~/.claude/projects                # every project, subagents included
    agentwatch import ~/.claude/projects/-home-me-app/0b1c....jsonl --dry-run --json

Exit status: 0 when every event was delivered (bad or unknown lines are reported, not fatal),
1 when some events were not delivered, 2 when nothing could be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from producers.transcripts.importer import ImportReport


def configure(parser: argparse.ArgumentParser, _name: str) -> None:
    parser.add_argument("paths", nargs="+", type=Path,
                        help="transcript files or directories (searched for *.jsonl)")
    parser.add_argument("--topic", default=None, help="topic to produce to (default: the ingest topic)")
    parser.add_argument("--dry-run", action="store_true", help="map and count, publish nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--flush-timeout", type=float, default=60.0,
                        help="seconds to wait at the end for Kafka to acknowledge everything")


def _print_text(report: ImportReport) -> None:
    totals = report.totals()
    print(f"files {totals['files']}  lines {totals['lines']}  events {totals['events_total']}  "
          f"published {totals['published']}  undelivered {totals['undelivered']}")
    for key in ("events", "unknown_line_types"):
        if totals[key]:
            print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in totals[key].items()))
    print(f"bad lines {totals['bad_lines']}  invalid events {totals['invalid_events']}  "
          f"unpaired tool uses {totals['unpaired_tool_uses']}  "
          f"orphan tool results {totals['orphan_tool_results']}  "
          f"usage lines folded {totals['usage_lines_folded']}")
    for f in report.files:
        samples = [*f.stats.bad_samples, *f.stats.invalid_samples]
        if samples:
            print(f"  {f.path}: " + "; ".join(samples))
    for line in report.unreadable:
        print(f"  unreadable: {line}")


def spool_name(topic: str) -> str:
    """One spool per target topic: leftovers of an interrupted import go where they were meant to."""
    return "import-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in topic)


def run(args: argparse.Namespace) -> int:
    from pipeline.settings import load_settings
    from producers.publisher import EventPublisher
    from producers.transcripts.importer import import_paths

    settings = load_settings()
    if args.dry_run:
        report = import_paths(args.paths, None)
    else:
        topic = args.topic or settings.topics.ingest
        # Through the durable spool: a Kafka outage mid-import loses nothing; what is not
        # delivered by the end stays spooled and goes out with the next import to this topic.
        with EventPublisher(settings, spool_name(topic), topic=topic) as publisher:
            report = import_paths(args.paths, publisher, flush_timeout=args.flush_timeout)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        _print_text(report)
    if not report.files:
        print("agentwatch import: no transcript could be read", file=sys.stderr)
        return 2
    if report.undelivered:
        print(f"agentwatch import: {report.undelivered} events not yet delivered; they stay in the "
              "spool and are sent by the next import to this topic", file=sys.stderr)
        return 1
    return 0
