"""`agentwatch install-hooks`: point Claude Code's hooks (and native telemetry) at the collector.

Merges agentwatch's hook entries into a Claude Code settings file: the user's own hooks are kept
as they are, agentwatch's earlier entries are replaced (so running it twice changes nothing), the
previous file is kept as ``<file>.agentwatch.bak``, and the new one is written atomically. A file
that is not valid JSON is left alone. ``--remove`` takes agentwatch's entries out again.

``--http`` (default) installs ``http`` hooks posting to ``/hooks``, except for ``SessionStart``,
which Claude Code only runs as a command hook: that one gets the command hook. ``--command``
installs the command hook (``python -S .../producers/hook_cmd.py``, the fastest start; it is the
same program as ``agentwatch hook``) everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

HOOK_EVENTS: tuple[str, ...] = (
    "SessionStart", "SessionEnd", "UserPromptSubmit", "PreToolUse", "PostToolUse",
    "PostToolUseFailure", "Notification", "Stop", "StopFailure", "SubagentStart", "SubagentStop",
    "PreCompact",
)
TOOL_EVENTS = frozenset({"PreToolUse", "PostToolUse", "PostToolUseFailure"})
COMMAND_ONLY = frozenset({"SessionStart"})
HTTP_TIMEOUT_S = 5
COMMAND_TIMEOUT_S = 10
HOOK_SCRIPT = Path(__file__).resolve().parent / "hook_cmd.py"


def otel_env(endpoint: str) -> dict[str, str]:
    """Claude Code's native telemetry, exported to the collector over OTLP/HTTP."""
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        "OTEL_LOGS_EXPORT_INTERVAL": "5000",
    }


def hook_command(python: str | None = None) -> str:
    return f"{shlex.quote(python or sys.executable)} -S {shlex.quote(str(HOOK_SCRIPT))}"


def is_ours(hook: Any, url: str) -> bool:
    if not isinstance(hook, dict):
        return False
    if hook.get("type") == "http":
        return hook.get("url") == url
    command = hook.get("command")
    if hook.get("type") != "command" or not isinstance(command, str):
        return False
    return ("producers/hook_cmd.py" in command or command.rstrip().endswith("agentwatch hook")
            or command.rstrip().endswith("pipeline.cli hook"))


def our_entry(event: str, mode: str, url: str, command: str) -> dict[str, Any]:
    if mode == "http" and event not in COMMAND_ONLY:
        return {"type": "http", "url": url, "timeout": HTTP_TIMEOUT_S}
    return {"type": "command", "command": command, "timeout": COMMAND_TIMEOUT_S}


def merge_hooks(
    settings: dict[str, Any],
    *,
    mode: str,
    url: str,
    command: str,
    events: Iterable[str] = HOOK_EVENTS,
    remove: bool = False,
) -> dict[str, Any]:
    """A copy of ``settings`` with agentwatch's hooks (re)installed, or removed with ``remove``."""
    out: dict[str, Any] = json.loads(json.dumps(settings))
    hooks = out.get("hooks")
    if hooks is None:
        hooks = out["hooks"] = {}
    if not isinstance(hooks, dict):
        raise ConfigError("settings.hooks is not an object; fix the file by hand first")
    for event in HOOK_EVENTS:
        groups = hooks.get(event)
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
                kept.append(group)
                continue
            mine = [h for h in group["hooks"] if is_ours(h, url)]
            if not mine:
                kept.append(group)
            elif len(mine) < len(group["hooks"]):
                kept.append({**group, "hooks": [h for h in group["hooks"] if not is_ours(h, url)]})
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
    if not remove:
        for event in events:
            entry: dict[str, Any] = {"matcher": "*"} if event in TOOL_EVENTS else {}
            entry["hooks"] = [our_entry(event, mode, url, command)]
            hooks.setdefault(event, []).append(entry)
    if not hooks:
        del out["hooks"]
    return out


def merge_env(settings: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Add the OTEL variables to ``settings.env``; never overrides a value the user set."""
    out: dict[str, Any] = json.loads(json.dumps(settings))
    current = out.setdefault("env", {})
    if not isinstance(current, dict):
        raise ConfigError("settings.env is not an object; fix the file by hand first")
    skipped = []
    for key, value in env.items():
        if key in current and current[key] != value:
            skipped.append(key)
        else:
            current[key] = value
    return out, skipped


def settings_path(args: argparse.Namespace) -> Path:
    if args.user:
        return Path.home() / ".claude" / "settings.json"
    name = "settings.local.json" if args.local else "settings.json"
    return Path(args.project or ".").resolve() / ".claude" / name


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); left untouched") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a JSON object; left untouched")
    return doc


def save(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        backup = path.with_name(path.name + ".agentwatch.bak")
        backup.write_bytes(path.read_bytes())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--project", metavar="DIR", help="DIR/.claude/settings.json (default: .)")
    where.add_argument("--user", action="store_true", help="~/.claude/settings.json")
    parser.add_argument("--local", action="store_true",
                        help="with --project: .claude/settings.local.json (not committed)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--http", dest="mode", action="store_const", const="http",
                     help="http hooks to the collector (default)")
    how.add_argument("--command", dest="mode", action="store_const", const="command",
                     help="command hooks (agentwatch hook) everywhere")
    parser.add_argument("--url", help="collector hooks URL (default from settings)")
    parser.add_argument("--env", action="store_true",
                        help="also write the OTEL_* variables into the settings file's env")
    parser.add_argument("--remove", action="store_true", help="remove agentwatch's hooks")
    parser.add_argument("--dry-run", action="store_true", help="print the result, write nothing")


def run(args: argparse.Namespace) -> int:
    from pipeline.settings import load_settings

    settings = load_settings()
    base = f"http://{settings.collector.host}:{settings.collector.port}"
    url = args.url or f"{base}/hooks"
    path = settings_path(args)
    doc = load(path)
    new = merge_hooks(doc, mode=args.mode or "http", url=url, command=hook_command(),
                      remove=args.remove)
    skipped: list[str] = []
    if args.env and not args.remove:
        new, skipped = merge_env(new, otel_env(base))
    if args.dry_run:
        print(json.dumps(new, indent=2))
    elif new != doc:
        save(path, new)
        print(f"{'removed agentwatch hooks from' if args.remove else 'wrote agentwatch hooks to'} {path}")
    else:
        print(f"{path} already up to date")
    for key in skipped:
        print(f"kept your own env {key} (agentwatch would set {otel_env(base)[key]})")
    if not args.remove:
        print("\nClaude Code's native telemetry (OTLP) goes to the collector with:")
        for key, value in otel_env(base).items():
            print(f"export {key}={value}")
    return 0
