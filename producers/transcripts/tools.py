"""Claude Code tool calls to event families: a tool_use's input plus its tool_result.

A tool_use's input is reduced to a small summary as soon as it is read (a Write's content can be
megabytes; only its size, line count and checksum are kept), so waiting for the matching result
costs little memory however long the transcript is.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

EXCERPT_CHARS = 2_000
MAX_ARGS = 64
MAX_ARG_CHARS = 512
_EXIT_CODE = re.compile(r"Exit code (\d+)")
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")

FILE_WRITE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
SEARCH_TOOLS = frozenset({"Glob", "Grep", "LS"})
SUBAGENT_TOOLS = frozenset({"Task", "Agent"})


@dataclass(frozen=True)
class ToolCall:
    tool_use_id: str
    name: str
    summary: Mapping[str, Any]
    started_us: int
    cwd: str | None = None


@dataclass(frozen=True)
class ToolOutcome:
    is_error: bool
    text: str
    finished_us: int
    structured: Mapping[str, Any] = field(default_factory=dict)
    """Claude Code's ``toolUseResult`` of the line, when it is an object."""


@dataclass(frozen=True)
class Mapped:
    event_type: str
    payload: dict[str, Any]
    severity: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def _lines(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def excerpt(text: str, *, tail: bool = False) -> str:
    if len(text) <= EXCERPT_CHARS:
        return text
    return text[-EXCERPT_CHARS:] if tail else text[:EXCERPT_CHARS]


def result_text(content: Any) -> str:
    """A tool_result's content (a string or a list of text/image blocks) as bounded text."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "\n".join(
            str(block.get("text", "")) for block in content
            if isinstance(block, Mapping) and block.get("type") == "text"
        )
    else:
        text = ""
    if len(text) > 2 * EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS] + "\n...\n" + text[-EXCERPT_CHARS:]
    return text


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def summarize_input(name: str, tool_input: Any) -> dict[str, Any]:
    """What the event will need from a tool_use's input, and nothing bigger."""
    inp: Mapping[str, Any] = tool_input if isinstance(tool_input, Mapping) else {}
    out: dict[str, Any] = {}
    path = _str(inp.get("file_path")) or _str(inp.get("notebook_path")) or _str(inp.get("path"))
    if path:
        out["path"] = path
    if name == "Write" and isinstance(inp.get("content"), str):
        content: str = inp["content"]
        data = content.encode()
        out.update(size=len(data), lines=_lines(content), sha256=hashlib.sha256(data).hexdigest())
    elif name == "Edit":
        out.update(removed=_lines(str(inp.get("old_string") or "")),
                   added=_lines(str(inp.get("new_string") or "")))
    elif name == "MultiEdit":
        edits = [e for e in inp.get("edits") or [] if isinstance(e, Mapping)]
        out.update(removed=sum(_lines(str(e.get("old_string") or "")) for e in edits),
                   added=sum(_lines(str(e.get("new_string") or "")) for e in edits))
    elif name == "NotebookEdit":
        out.update(added=_lines(str(inp.get("new_source") or "")))
    elif name == "Bash":
        out["command"] = str(inp.get("command") or "")
        if inp.get("run_in_background"):
            out["background"] = True
    elif name in SEARCH_TOOLS:
        out["pattern"] = _str(inp.get("pattern"))
    elif name == "WebFetch":
        out["url"] = _str(inp.get("url"))
    elif name in SUBAGENT_TOOLS:
        out.update(agent_type=_str(inp.get("subagent_type")),
                   description=_str(inp.get("description")))
    return out


def split_command(command: str) -> tuple[str, list[str]]:
    """(binary, args) of a shell command line; leading VAR=value assignments are skipped."""
    try:
        tokens = shlex.split(command, posix=True)
    except ValueError:  # unbalanced quotes: the words are still useful
        tokens = command.split()
    while tokens and _ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return (command.strip()[:MAX_ARG_CHARS] or "sh"), []
    return tokens[0][:MAX_ARG_CHARS], [t[:MAX_ARG_CHARS] for t in tokens[1:MAX_ARGS + 1]]


def exit_code(outcome: ToolOutcome) -> int | None:
    if outcome.structured.get("interrupted") is True:
        return None
    if not outcome.is_error:
        return 0
    match = _EXIT_CODE.search(outcome.text[:200])
    return int(match.group(1)) if match else 1


def _duration_ms(call: ToolCall, outcome: ToolOutcome | None) -> int | None:
    if outcome is None:
        return None
    return max(0, outcome.finished_us - call.started_us) // 1000


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _command(call: ToolCall, outcome: ToolOutcome | None) -> Mapped:
    binary, args = split_command(str(call.summary.get("command") or ""))
    body: dict[str, Any] = {"binary": binary, "args": args, "cwd": call.cwd,
                            "duration_ms": _duration_ms(call, outcome)}
    if outcome is not None:
        stdout = outcome.structured.get("stdout")
        stderr = outcome.structured.get("stderr")
        if not isinstance(stdout, str) and not isinstance(stderr, str):
            stdout, stderr = ("", outcome.text) if outcome.is_error else (outcome.text, "")
        stdout, stderr = str(stdout or ""), str(stderr or "")
        failed = outcome.is_error
        body.update(
            exit_code=exit_code(outcome),
            stdout_lines=_lines(stdout), stderr_lines=_lines(stderr),
            stdout_excerpt=excerpt(stdout, tail=failed) or None,
            stderr_excerpt=excerpt(stderr, tail=True) or None,
        )
    meta = {"background": "true"} if call.summary.get("background") else {}
    return Mapped("command.executed", body, metadata=meta)


def _file_write(call: ToolCall, outcome: ToolOutcome | None) -> Mapped:
    s = call.summary
    added, removed = s.get("added", s.get("lines")), s.get("removed")
    patch = outcome.structured.get("structuredPatch") if outcome is not None else None
    if isinstance(patch, list) and patch:
        hunks = [h for h in patch if isinstance(h, Mapping)]
        body_lines = [str(line) for h in hunks for line in h.get("lines") or []]
        added = sum(1 for line in body_lines if line.startswith("+"))
        removed = sum(1 for line in body_lines if line.startswith("-"))
    elif call.name == "Write" and removed is None:
        removed = 0
    return Mapped("file.write", {
        "path": s.get("path") or "(unknown)", "size_bytes": s.get("size"),
        "lines_added": added, "lines_removed": removed, "checksum_sha256": s.get("sha256"),
        "duration_us": None if outcome is None else max(0, outcome.finished_us - call.started_us),
    })


def _file_read(call: ToolCall, outcome: ToolOutcome | None) -> Mapped:
    size = None
    if outcome is not None:
        file_info = outcome.structured.get("file")
        if isinstance(file_info, Mapping) and isinstance(file_info.get("content"), str):
            size = len(file_info["content"].encode())
    return Mapped("file.read", {
        "path": call.summary.get("path") or "(unknown)", "size_bytes": size,
        "duration_us": None if outcome is None else max(0, outcome.finished_us - call.started_us),
    })


def _file_search(call: ToolCall, outcome: ToolOutcome | None) -> Mapped:
    matched = None
    if outcome is not None:
        matched = _int(outcome.structured.get("numFiles"))
        names = outcome.structured.get("filenames")
        if matched is None and isinstance(names, list):
            matched = len(names)
    return Mapped("file.search", {
        "path": call.summary.get("path") or call.cwd or ".",
        "pattern": call.summary.get("pattern"), "files_matched": matched,
        "duration_us": None if outcome is None else max(0, outcome.finished_us - call.started_us),
    })


def _web_fetch(call: ToolCall, outcome: ToolOutcome | None) -> Mapped | None:
    url = call.summary.get("url")
    parts = urlsplit(url) if url else None
    if parts is None or not parts.hostname:
        return None
    structured = outcome.structured if outcome is not None else {}
    return Mapped("network.request", {
        "protocol": parts.scheme or "https", "domain": parts.hostname,
        "endpoint": parts.path or "/", "status_code": _int(structured.get("code")),
        "bytes_received": _int(structured.get("bytes")),
        "duration_ms": _int(structured.get("durationMs")) or _duration_ms(call, outcome),
    })


def _subagent(call: ToolCall, outcome: ToolOutcome | None) -> Mapped:
    failed = outcome is not None and outcome.is_error
    structured = outcome.structured if outcome is not None else {}
    body: dict[str, Any] = {
        "agent_name": call.summary.get("agent_type") or "subagent",
        "task_type": "subagent",
        "input_description": call.summary.get("description"),
        "duration_ms": _int(structured.get("totalDurationMs")) or _duration_ms(call, outcome),
    }
    if failed and outcome is not None:
        body.update(exit_code=1, error_type="tool_error", error_message=excerpt(outcome.text))
    if outcome is None:
        return Mapped("agent.task.started", body)
    return Mapped("agent.task.failed" if failed else "agent.task.completed", body)


def _other(call: ToolCall, outcome: ToolOutcome | None) -> Mapped:
    doc = {"tool": call.name, "completed": outcome is not None,
           "is_error": bool(outcome and outcome.is_error),
           "duration_ms": _duration_ms(call, outcome)}
    return Mapped("tool.executed", {"name": call.name, "json": json.dumps(doc, sort_keys=True)})


def map_tool(call: ToolCall, outcome: ToolOutcome | None) -> Mapped:
    """The event of one tool call; ``outcome`` is ``None`` when its result never arrived."""
    name = call.name
    if name == "Bash":
        mapped = _command(call, outcome)
    elif name in FILE_WRITE_TOOLS:
        mapped = _file_write(call, outcome)
    elif name == "Read":
        mapped = _file_read(call, outcome)
    elif name in SEARCH_TOOLS:
        mapped = _file_search(call, outcome)
    elif name in SUBAGENT_TOOLS:
        mapped = _subagent(call, outcome)
    else:
        mapped = (_web_fetch(call, outcome) if name == "WebFetch" else None) or _other(call, outcome)
    if outcome is not None and outcome.is_error and mapped.event_type != "command.executed":
        # A failed Edit or Read is still the agent's action; flag it instead of dropping it.
        meta = {**mapped.metadata, "tool_error": excerpt(outcome.text)[:500] or "error"}
        severity = mapped.severity or ("error" if mapped.event_type == "agent.task.failed"
                                       else "warning")
        return Mapped(mapped.event_type, mapped.payload, severity, meta)
    return mapped
