"""CLI commands for the local stack: up, down, status, migrate, topics."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pipeline.migrations import apply_migrations
from pipeline.settings import load_settings
from pipeline.stack.manager import LocalStack, StackReport
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
        parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                            help="throughput is the counter difference between two /metrics "
                                 "scrapes this far apart (default 1 s)")
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
            flow = {} if args.services_only else _flow(settings, report, args.interval)
            if args.json:
                print(json.dumps({**json.loads(report.to_json()), **flow}, indent=2))
            else:
                _print_table(stack, report)
                _print_flow(flow)
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


def _flow(settings: Any, report: StackReport, interval_s: float) -> dict[str, Any]:
    """Throughput of the running components and lag of the consumer groups (Kafka admin API)."""
    from pipeline.stack.lag import consumer_groups, measure_lag
    from pipeline.stack.throughput import measure_throughput

    running = [s.name for s in report.services if s.healthy]
    flow: dict[str, Any] = {
        "throughput_interval_s": interval_s,
        "throughput": [t.as_dict() for t in measure_throughput(settings, running, interval_s)],
    }
    kafka_up = all(s.healthy for s in report.services if s.name.startswith("kafka"))
    if not kafka_up:
        flow["lag"], flow["lag_error"] = [], "kafka down"
        return flow
    try:
        flow["lag"] = [g.as_dict() for g in measure_lag(settings.kafka, consumer_groups(settings))]
    except Exception as exc:  # status reports, it never crashes on a half-up stack
        flow["lag"], flow["lag_error"] = [], str(exc)[:200]
    return flow


def _print_flow(flow: dict[str, Any]) -> None:
    if not flow:
        return
    print(f"  throughput (rate over {flow['throughput_interval_s']:g} s, total since start)")
    for t in flow["throughput"]:
        rate = "-" if t["per_s"] is None else f"{t['per_s']:.1f}/s"
        total = "-" if t["total"] is None else f"{t['total']:.0f}"
        print(f"    {t['component']:<16} {rate:>10}  {t['unit']} (total {total})")
    print("  consumer lag (messages not yet read, per group)")
    if flow.get("lag_error"):
        print(f"    {flow['lag_error']}")
    for g in flow["lag"]:
        lag = g["error"] or ("no commits yet" if not g["committed_partitions"] else "")
        value = "-" if g["lag"] is None else str(g["lag"])
        print(f"    {g['component']:<16} {value:>10}  {g['group']} <- {g['topic']} {lag}".rstrip())
    sys.stdout.flush()


def _print_table(stack: LocalStack, report: StackReport | None = None) -> None:
    report = report or stack.status()
    for svc in report.services:
        state = "healthy" if svc.healthy else ("running, unhealthy" if svc.running else "down")
        pid = f"pid {svc.pid}" if svc.pid else "-"
        print(f"  {svc.name:<16} {state:<20} {svc.endpoint:<40} {pid}")
    sys.stdout.flush()
