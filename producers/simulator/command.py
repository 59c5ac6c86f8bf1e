"""`agentwatch simulate`: realistic multi-agent sessions sent to the collector, with ground truth.

    agentwatch simulate --sessions 20 --agents 3 --rate 200 --duration 60
    agentwatch simulate --scenario compile_loop --sessions 1 --truth truth.json
    agentwatch simulate --scenario secrets --dry-run > payloads.jsonl

Exit status: 0 when the collector accepted every payload, 1 when some were given up on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser, _name: str) -> None:
    from producers.simulator.run import SCENARIOS
    from producers.simulator.spec import LANGUAGES, SECRET_KINDS

    parser.add_argument("--sessions", type=int, default=5, help="sessions running side by side")
    parser.add_argument("--agents", type=int, default=None,
                        help="agents per session: the main one plus subagents (default: mixed)")
    parser.add_argument("--rate", type=float, default=None,
                        help="payloads per second across all sessions (default: as fast as it takes)")
    parser.add_argument("--duration", type=float, default=None,
                        help="keep starting sessions for this many seconds (default: one each)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="realistic")
    parser.add_argument("--seed", default="0", help="same seed, same sessions")
    parser.add_argument("--language", choices=LANGUAGES, default=None)
    parser.add_argument("--compile-errors", type=int, default=None)
    parser.add_argument("--failing-test-runs", type=int, default=None)
    parser.add_argument("--flaky-test", action="store_true", default=None)
    parser.add_argument("--memory-growth-runs", type=int, default=None)
    parser.add_argument("--retry-storm", type=int, default=None)
    parser.add_argument("--stall", type=float, default=None, dest="stall_s",
                        help="seconds a session waits on a permission prompt")
    parser.add_argument("--secrets", default=None,
                        help=f"comma-separated canaries to plant: {','.join(SECRET_KINDS)}")
    parser.add_argument("--url", default=None,
                        help="collector base URL (default: from the collector settings)")
    parser.add_argument("--otlp-encoding", choices=("protobuf", "json"), default="protobuf")
    parser.add_argument("--give-up", type=float, default=60.0,
                        help="seconds to keep retrying a payload the collector does not take")
    parser.add_argument("--truth", type=Path, default=None, help="write the ground truth JSON here")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the payloads as JSON lines instead of sending them")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    secrets = tuple(s for s in args.secrets.split(",") if s) if args.secrets else None
    return {"agents": args.agents, "language": args.language, "compile_errors": args.compile_errors,
            "failing_test_runs": args.failing_test_runs, "flaky_test": args.flaky_test,
            "memory_growth_runs": args.memory_growth_runs, "retry_storm": args.retry_storm,
            "stall_s": args.stall_s, "secrets": secrets}


def run(args: argparse.Namespace) -> int:
    from pipeline.settings import load_settings
    from producers.simulator.driver import Target
    from producers.simulator.run import generate, simulate
    from producers.simulator.script import account

    overrides = _overrides(args)
    if args.dry_run:
        scripts = generate(args.sessions, args.scenario, seed=args.seed, **overrides)
        for script in scripts:
            for step in script.steps:
                print(json.dumps({"channel": step.channel, "pause_before_s": step.pause_before_s,
                                  "body": step.body}, sort_keys=True))
        truth = account(scripts).to_json()
        failed = 0
    else:
        settings = load_settings()
        base = args.url or f"http://{settings.collector.host}:{settings.collector.port}"
        stats, accounting = asyncio.run(simulate(
            Target.from_base(base, args.otlp_encoding), sessions=args.sessions,
            scenario=args.scenario, seed=args.seed, rate=args.rate, duration_s=args.duration,
            give_up_s=args.give_up, **overrides))
        truth = accounting.to_json()
        failed = stats.failed
        summary = {"drive": stats.to_json(),
                   "truth": {k: v for k, v in truth.items() if k not in ("sessions", "canaries")}}
        print(json.dumps(summary, indent=2, sort_keys=True))
    if args.truth is not None:
        args.truth.write_text(json.dumps(truth, indent=2, sort_keys=True))
    if failed:
        print(f"agentwatch simulate: {failed} payloads were not accepted", file=sys.stderr)
        return 1
    return 0
