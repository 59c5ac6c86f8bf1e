"""Tool calls of Claude Code (as hooks report them) -> event drafts: type, payload, metadata.

Pure functions over the hook's ``tool_input`` / ``tool_response``. Every field is optional:
older Claude Code versions send less, and a draft is still complete (required payload fields
get a placeholder such as ``<unknown>``). Contents (file text, command output, prompts) never
travel whole: only counts, hashes and bounded excerpts, which the processor redacts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from producers.collector import commands

UNKNOWN = "<unknown>"
TASK_TOOLS = frozenset({"Task", "Agent"})
FILE_WRITE_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})
FILE_READ_TOOLS = frozenset({"Read", "NotebookRead"})
SEARCH_TOOLS = frozenset({"Grep", "Glob", "LS"})
NETWORK_TOOLS = frozenset({"WebFetch", "WebSearch"})
OTHER_JSON_MAX = 16_000
_STR_MAX = 2000
_LIST_MAX = 50


@dataclass
class Draft:
    """An event before its envelope: the mapper adds ids, session, time and source."""

    event_type: str
    payload: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    severity: str | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class ToolOutcome:
    """How a tool call ended, from PostToolUse (success) or PostToolUseFailure."""

    failed: bool = False
    error: str | None = None
    interrupted: bool = False
    duration_ms: int | None = None
    cwd: str | None = None
    excerpt_chars: int = 2000


# -- small readers --------------------------------------------------------------------------

def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def as_text(value: Any) -> str:
    """The string, or "" for anything else (a missing or mistyped field)."""
    return value if isinstance(value, str) else ""


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def non_negative(value: int | None) -> int | None:
    return value if value is None or value >= 0 else None


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def bounded(value: Any, depth: int = 0) -> Any:
    """A JSON-able copy with long strings and lists cut, so ``OtherEvent.json`` stays small."""
    if isinstance(value, str):
        return value if len(value) <= _STR_MAX else value[:_STR_MAX] + f"...[{len(value)} chars]"
    if isinstance(value, Mapping):
        if depth > 6:
            return "{...}"
        return {str(k): bounded(v, depth + 1) for k, v in list(value.items())[:_LIST_MAX]}
    if isinstance(value, list | tuple):
        if depth > 6:
            return "[...]"
        items = [bounded(v, depth + 1) for v in value[:_LIST_MAX]]
        if len(value) > _LIST_MAX:
            items.append(f"...[{len(value)} items]")
        return items
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def other_json(value: Any) -> str:
    text = json.dumps(bounded(value), ensure_ascii=False, default=str)
    if len(text) > OTHER_JSON_MAX:
        text = json.dumps({"truncated": True, "chars": len(text), "head": text[:OTHER_JSON_MAX // 2]})
    return text


def _outcome_metadata(outcome: ToolOutcome) -> dict[str, str]:
    if outcome.interrupted:
        return {"outcome": "interrupted"}
    return {"outcome": "failed" if outcome.failed else "success"}


def _error_text(outcome: ToolOutcome, limit: int = 500) -> str | None:
    return commands.excerpt(outcome.error or "", limit) if outcome.error else None


# -- structured patches ---------------------------------------------------------------------

def patch_counts(patch: Any) -> tuple[int, int] | None:
    """(added, removed) lines of a Claude Code ``structuredPatch`` (list of hunks), or None."""
    if not isinstance(patch, list) or not patch:
        return None
    added = removed = 0
    for hunk in patch:
        for line in as_dict(hunk).get("lines") or ():
            if isinstance(line, str):
                if line.startswith("+"):
                    added += 1
                elif line.startswith("-"):
                    removed += 1
    return added, removed


def _text_lines(text: Any) -> int:
    return commands.line_count(text) if isinstance(text, str) else 0


def _edit_counts(tool_input: Mapping[str, Any]) -> tuple[int, int]:
    edits = tool_input.get("edits")
    pairs = edits if isinstance(edits, list) else [tool_input]
    added = removed = 0
    for item in pairs:
        edit = as_dict(item)
        added += _text_lines(edit.get("new_string"))
        removed += _text_lines(edit.get("old_string"))
    return added, removed


# -- per tool -------------------------------------------------------------------------------

def file_write(tool: str, tool_input: dict[str, Any], response: dict[str, Any],
               outcome: ToolOutcome) -> Draft:
    path = (as_str(tool_input.get("file_path")) or as_str(tool_input.get("notebook_path"))
            or as_str(response.get("filePath")) or as_str(response.get("notebook_path")) or UNKNOWN)
    body: dict[str, Any] = {"path": path}
    meta = _outcome_metadata(outcome)
    if outcome.failed:
        body["reason"] = f"{tool} failed: {_error_text(outcome) or 'no detail'}"
    elif tool == "NotebookEdit":
        mode = as_str(tool_input.get("edit_mode")) or as_str(response.get("edit_mode")) or "replace"
        source = tool_input.get("new_source", response.get("new_source"))
        body["reason"] = f"notebook {mode}"
        if mode == "delete":
            body["lines_added"] = 0
        else:
            body["lines_added"] = _text_lines(source)
    else:
        counts = patch_counts(response.get("structuredPatch"))
        content = tool_input.get("content") if tool == "Write" else None
        if isinstance(content, str):
            body["checksum_sha256"] = sha256_text(content)
            body["size_bytes"] = len(content.encode("utf-8", "surrogatepass"))
        if counts is None and tool == "Write":
            kind = as_str(response.get("type")) or "create"
            counts = (_text_lines(content), 0) if kind == "create" else None
        if counts is None and tool in ("Edit", "MultiEdit"):
            counts = _edit_counts(tool_input)
        if counts is not None:
            body["lines_added"], body["lines_removed"] = counts
        body["reason"] = as_str(response.get("type")) or tool.lower()
    return Draft("file.write", body, meta)


def file_read(tool_input: dict[str, Any], response: dict[str, Any], outcome: ToolOutcome) -> Draft:
    file_info = as_dict(response.get("file"))
    path = (as_str(tool_input.get("file_path")) or as_str(tool_input.get("notebook_path"))
            or as_str(file_info.get("filePath")) or UNKNOWN)
    body: dict[str, Any] = {"path": path}
    meta = _outcome_metadata(outcome)
    content = file_info.get("content")
    num, total = as_int(file_info.get("numLines")), as_int(file_info.get("totalLines"))
    if num is not None:
        meta["lines_read"] = str(num)
    if isinstance(content, str):
        body["size_bytes"] = len(content.encode("utf-8", "surrogatepass"))
        # A checksum of a slice would not be the file's: only when the whole file was read.
        if as_int(file_info.get("startLine")) in (None, 1) and (total is None or num == total):
            body["checksum_sha256"] = sha256_text(content)
    if outcome.failed:
        body["reason"] = f"Read failed: {_error_text(outcome) or 'no detail'}"
    return Draft("file.read", body, meta)


def file_search(tool: str, tool_input: dict[str, Any], response: dict[str, Any],
                outcome: ToolOutcome) -> Draft:
    pattern = as_str(tool_input.get("pattern"))
    glob = as_str(tool_input.get("glob"))
    if glob and pattern:
        pattern = f"{pattern} (glob {glob})"
    body: dict[str, Any] = {
        "path": as_str(tool_input.get("path")) or outcome.cwd or ".",
        "pattern": pattern or glob,
    }
    filenames = response.get("filenames")
    matched = as_int(response.get("numFiles"))
    if matched is None and isinstance(filenames, list):
        matched = len(filenames)
    body["files_matched"] = non_negative(matched)
    duration = as_int(response.get("durationMs"))
    if duration is not None and duration >= 0:
        body["duration_us"] = duration * 1000
    meta = {**_outcome_metadata(outcome), "search_tool": tool}
    if outcome.failed:
        body["reason"] = f"{tool} failed: {_error_text(outcome) or 'no detail'}"
    return Draft("file.search", body, meta)


def network(tool: str, tool_input: dict[str, Any], response: dict[str, Any],
            outcome: ToolOutcome) -> Draft:
    meta = _outcome_metadata(outcome)
    if tool == "WebSearch":
        body: dict[str, Any] = {"protocol": "https", "domain": "websearch"}
        seconds = response.get("durationSeconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            body["duration_ms"] = int(seconds * 1000)
        results = response.get("results")
        if isinstance(results, list):
            meta["results"] = str(len(results))
    else:
        url = as_str(tool_input.get("url")) or as_str(response.get("url")) or ""
        parts = urlsplit(url)
        # The path only: query strings are where tokens hide.
        body = {"protocol": parts.scheme or "https", "domain": parts.hostname or UNKNOWN,
                "endpoint": parts.path or None,
                "status_code": as_int(response.get("code")),
                "bytes_received": non_negative(as_int(response.get("bytes"))),
                "duration_ms": non_negative(as_int(response.get("durationMs")))}
    if outcome.failed:
        meta["error"] = _error_text(outcome, 200) or "failed"
    return Draft("network.request", body, meta)


def command_drafts(tool_input: dict[str, Any], response: dict[str, Any],
                   outcome: ToolOutcome) -> list[Draft]:
    command = as_str(tool_input.get("command")) or ""
    binary, args = commands.program_and_args(command) if command else (UNKNOWN, [])
    stdout = as_text(response.get("stdout"))
    stderr = as_text(response.get("stderr"))
    if outcome.failed and outcome.error and not stderr:
        stderr = outcome.error
    interrupted = outcome.interrupted or response.get("interrupted") is True
    exit_code = next((c for c in (as_int(response.get(k)) for k in
                                  ("exit_code", "exitCode", "returnCode", "code")) if c is not None),
                     None)
    if exit_code is None:
        if outcome.failed:
            exit_code = commands.exit_code_from(outcome.error or stderr)
        elif not interrupted:
            exit_code = 0
    body: dict[str, Any] = {
        "binary": binary or UNKNOWN,
        "args": args,
        "cwd": outcome.cwd,
        "exit_code": exit_code,
        "duration_ms": outcome.duration_ms,
        "stdout_lines": commands.line_count(stdout),
        "stderr_lines": commands.line_count(stderr),
        "stdout_excerpt": commands.excerpt(stdout, outcome.excerpt_chars),
        "stderr_excerpt": commands.excerpt(stderr, outcome.excerpt_chars),
        "network_requests": commands.network_hosts(command),
    }
    meta = {**_outcome_metadata(ToolOutcome(failed=outcome.failed, interrupted=interrupted))}
    if tool_input.get("run_in_background") is True:
        meta["background"] = "true"
    drafts = [Draft("command.executed", body, meta)]
    kind = commands.classify(command) if command else None
    if kind is not None:
        run_meta = {"runner": kind.tool, **meta}
        if kind.kind == "test":
            counts = commands.result_counts(stdout)
            failures = any(counts.get(k, "0") != "0" for k in ("tests.failed", "tests.errors"))
            outcome_word = ("errored" if interrupted else
                            "failed" if failures else
                            "skipped" if exit_code == 5 and kind.tool == "pytest" else
                            "passed" if exit_code == 0 else
                            "failed" if exit_code is not None or outcome.failed else "unknown")
            run_meta.update(counts)
            drafts.append(Draft("test.executed", {
                "suite": kind.tool, "test_name": kind.target or kind.tool, "outcome": outcome_word,
                "duration_ms": outcome.duration_ms}, run_meta))
        else:
            build_word = ("cancelled" if interrupted else "success" if exit_code == 0 else
                          "failure" if exit_code is not None or outcome.failed else "unknown")
            component = kind.target if kind.target and kind.target != kind.tool else (
                (outcome.cwd or "").rstrip("/").rsplit("/", 1)[-1] or kind.tool)
            drafts.append(Draft("build.completed", {
                "component": component, "build_type": kind.tool, "outcome": build_word,
                "duration_ms": outcome.duration_ms}, run_meta))
    return drafts


def task_started(tool: str, tool_input: dict[str, Any]) -> Draft:
    prompt = as_str(tool_input.get("prompt"))
    return Draft("agent.task.started", {
        "agent_name": as_str(tool_input.get("subagent_type")) or "general-purpose",
        "task_type": tool.lower(),
        "input_description": as_str(tool_input.get("description")),
        "input_hash": sha256_text(prompt) if prompt else None,
    }, {"tool": tool})


def task_finished(tool: str, tool_input: dict[str, Any], response: dict[str, Any],
                  outcome: ToolOutcome) -> Draft:
    status = as_str(response.get("status"))
    failed = outcome.failed or outcome.interrupted or (status not in (None, "completed"))
    body: dict[str, Any] = {
        "agent_name": as_str(tool_input.get("subagent_type")) or "general-purpose",
        "task_type": tool.lower(),
        "input_description": as_str(tool_input.get("description")),
        "duration_ms": non_negative(as_int(response.get("totalDurationMs"))) or outcome.duration_ms,
    }
    text = _content_text(response.get("content"))
    if text:
        body["output_hash"] = sha256_text(text)
    meta: dict[str, str] = {"tool": tool, **_outcome_metadata(outcome)}
    if status:
        meta["status"] = status
    for key, name in (("totalTokens", "tokens.total"), ("totalToolUseCount", "tool_uses")):
        value = as_int(response.get(key))
        if value is not None:
            meta[name] = str(value)
    usage = as_dict(response.get("usage"))
    for key, name in (("input_tokens", "tokens.input"), ("output_tokens", "tokens.output"),
                      ("cache_read_input_tokens", "tokens.cache_read"),
                      ("cache_creation_input_tokens", "tokens.cache_creation")):
        value = as_int(usage.get(key))
        if value is not None:
            meta[name] = str(value)
    if failed:
        body["error_type"] = "interrupted" if outcome.interrupted else (status or "tool_error")
        body["error_message"] = _error_text(outcome) or (f"subagent ended {status}" if status else None)
        return Draft("agent.task.failed", body, meta)
    return Draft("agent.task.completed", body, meta)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(as_dict(c).get("text", "")) for c in content if isinstance(c, dict))
    return ""


def other_tool(tool: str, tool_input: dict[str, Any], response: Any, outcome: ToolOutcome) -> Draft:
    doc = {"tool_name": tool, "tool_input": tool_input, "tool_response": response,
           **({"error": outcome.error} if outcome.error else {})}
    return Draft("other", {"name": f"tool.{tool}", "json": other_json(doc)},
                 {"tool": tool, **_outcome_metadata(outcome)})


def tool_result(tool: str, tool_input: dict[str, Any], response: Any,
                outcome: ToolOutcome) -> list[Draft]:
    """Drafts for a finished tool call (PostToolUse / PostToolUseFailure)."""
    resp = as_dict(response)
    if tool == "Bash":
        return command_drafts(tool_input, resp, outcome)
    if tool in TASK_TOOLS:
        return [task_finished(tool, tool_input, resp, outcome)]
    if tool in FILE_WRITE_TOOLS:
        return [file_write(tool, tool_input, resp, outcome)]
    if tool in FILE_READ_TOOLS:
        return [file_read(tool_input, resp, outcome)]
    if tool in SEARCH_TOOLS:
        return [file_search(tool, tool_input, resp, outcome)]
    if tool in NETWORK_TOOLS:
        return [network(tool, tool_input, resp, outcome)]
    return [other_tool(tool, tool_input, response, outcome)]
