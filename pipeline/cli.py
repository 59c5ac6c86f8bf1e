"""The `agentwatch` command: a table of subcommands, each imported only when it runs.

Lazy imports keep light commands light (`agentwatch hook` runs on every tool call of an agent
and must not pay for Kafka or Faust) and keep pipeline/ free of imports of the stages: a command
is named here by module path. Each command module exposes ``configure(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import AgentwatchError


@dataclass(frozen=True)
class CommandRef:
    module: str
    help: str


COMMANDS: dict[str, CommandRef] = {
    "up": CommandRef("pipeline.stack.commands", "install what is missing and start the local stack"),
    "down": CommandRef("pipeline.stack.commands", "stop everything `up` started"),
    "status": CommandRef("pipeline.stack.commands", "health of each service and component"),
    "migrate": CommandRef("pipeline.stack.commands", "apply pending ClickHouse migrations"),
    "topics": CommandRef("pipeline.stack.commands", "create missing Kafka topics"),
    "config": CommandRef("pipeline.config_doc", "print the effective settings (secrets masked)"),
    "collector": CommandRef("producers.collector.app",
                            "receive Claude Code hooks and OTLP telemetry into the ingest topic"),
    "sampler": CommandRef("producers.sampler.main",
                          "sample the agents' CPU, memory and connections into the ingest topic"),
    "hook": CommandRef("producers.hook_cmd",
                       "Claude Code command hook: hand stdin's hook to the collector (exits 0)"),
    "install-hooks": CommandRef("producers.install_hooks",
                                "write agentwatch hooks into Claude Code settings.json; print OTEL vars"),
    "worker": CommandRef("processors.worker",
                         "run the stream processor (validate, redact, enrich ingest -> events)"),
    "alerts": CommandRef("consumers.alerting.main",
                         "deliver pattern alerts to the terminal, a webhook and email digests"),
    "logs": CommandRef("consumers.logger.main",
                       "print events as `[time] LEVEL [agent] message` lines (--follow, --session)"),
    "import": CommandRef("producers.transcripts.command",
                         "backfill sessions from Claude Code transcript JSONL files"),
    "emit": CommandRef("pipeline.emit_cmd", "publish one custom event (the SDK from a shell)"),
    "simulate": CommandRef("producers.simulator.command",
                           "send realistic simulated sessions to the collector (with ground truth)"),
    "sink clickhouse": CommandRef("consumers.clickhouse.sink",
                                  "load events, pattern alerts and dead letters into ClickHouse"),
    "query": CommandRef("consumers.clickhouse.cli",
                        "run a named analytics query (--list shows them) against ClickHouse"),
    "sql": CommandRef("consumers.clickhouse.cli", "run read-only SQL against ClickHouse"),
    "search": CommandRef("consumers.clickhouse.cli",
                         "find events with field:value search (AND/OR/NOT, wildcards, ranges)"),
    "retention apply": CommandRef("consumers.clickhouse.cli",
                                  "drop/delete ClickHouse data past its retention; report it"),
    "sink archive": CommandRef("consumers.archive.sink",
                               "archive every session as a JSONL.gz recording (S3 or a folder)"),
    "replay": CommandRef("consumers.archive.commands",
                         "re-emit a recorded session onto the replay topic at its original pace"),
    "export-session": CommandRef("consumers.archive.commands",
                                 "write a session's recording to a JSONL.gz file for sharing"),
    "gateway": CommandRef("consumers.gateway.app",
                          "serve the web dashboard, its WebSocket feed and the REST API"),
    "token": CommandRef("consumers.gateway.token_cmd",
                        "mint a dashboard/API token (JWT) for local use"),
    "bench all": CommandRef("pipeline.bench_cmd",
                            "run every bench/ script several times; write docs/benchmarks.md figures"),
    "export": CommandRef("consumers.privacy.commands",
                         "export everything about a user (or session) as JSONL/CSV + manifest"),
    "delete": CommandRef("consumers.privacy.commands",
                         "erase a user's or a session's telemetry everywhere, then verify"),
    "privacy set": CommandRef("consumers.privacy.commands",
                              "set a user's telemetry consent (enabled/disabled/minimal), retention"),
    "privacy show": CommandRef("consumers.privacy.commands", "show a user's privacy settings"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: agentwatch COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {ref.help}" for name, ref in COMMANDS.items()]
    lines += ["", "`agentwatch COMMAND --help` for a command's options."]
    return "\n".join(lines)


def _resolve(argv: Sequence[str]) -> tuple[str, Sequence[str]] | None:
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or args_in[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    resolved = _resolve(args_in)
    if resolved is None:
        print(f"agentwatch: unknown command {args_in[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    name, rest = resolved
    module = importlib.import_module(COMMANDS[name].module)
    parser = argparse.ArgumentParser(prog=f"agentwatch {name}", description=COMMANDS[name].help)
    parser.set_defaults(command=name)
    module.configure(parser, name)
    args = parser.parse_args(list(rest))
    try:
        return int(module.run(args))
    except AgentwatchError as exc:
        print(f"agentwatch {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
