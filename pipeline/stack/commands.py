"""CLI commands for the local stack: up, down, status, migrate, topics."""

from __future__ import annotations

import argparse
import sys

from pipeline.migrations import apply_migrations
from pipeline.settings import load_settings
from pipeline.stack.manager import LocalStack
from pipeline.topics import ensure_topics, topic_specs


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "up":
        parser.add_argument("--services-only", action="store_true",
                            help="start Kafka, ClickHouse and S3 but no pipeline component")
        parser.add_argument("--brokers", type=int, choices=(1, 3), default=None,
                            help="3 starts the 3-broker cluster (ports 9092/9094/9096, RF 3)")
    elif name == "status":
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--services-only", action="store_true",
                            help="only Kafka, ClickHouse and S3 (after `up --services-only`)")
    elif name == "migrate":
        parser.add_argument("--database", default=None, help="target database (default: settings)")


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, dict[str, object]] = {}
    if getattr(args, "brokers", None) == 3:
        overrides["stack"] = {"brokers": 3}
        overrides["kafka"] = {"bootstrap_servers": "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"}
        overrides["topics"] = {"replication_factor": 3, "min_insync_replicas": 2}
    settings = load_settings(**overrides)
    stack = LocalStack(settings, say=lambda msg: print(f"agentwatch: {msg}", flush=True))
    match args.command:
        case "up":
            stack.up_services()
            if not args.services_only:
                started = stack.up_components()
                if started:
                    print(f"agentwatch: started {', '.join(started)}")
            _print_table(stack)
            return 0
        case "down":
            stopped = stack.down()
            print("agentwatch: stopped " + (", ".join(stopped) if stopped else "nothing"))
            return 0
        case "status":
            report = stack.status(services_only=args.services_only)
            if args.json:
                print(report.to_json())
            else:
                _print_table(stack)
            return 0 if report.healthy else 1
        case "migrate":
            applied = apply_migrations(settings.clickhouse, args.database)
            print("agentwatch: applied " + (", ".join(applied) if applied else "nothing (up to date)"))
            return 0
        case "topics":
            created = ensure_topics(settings.kafka, topic_specs(settings.topics))
            print("agentwatch: created " + (", ".join(created) if created else "nothing"))
            return 0
    return 2


def _print_table(stack: LocalStack) -> None:
    report = stack.status()
    for svc in report.services:
        state = "healthy" if svc.healthy else ("running, unhealthy" if svc.running else "down")
        pid = f"pid {svc.pid}" if svc.pid else "-"
        print(f"  {svc.name:<16} {state:<20} {svc.endpoint:<40} {pid}")
    sys.stdout.flush()
