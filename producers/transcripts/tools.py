"""Transcript tool calls through the collector's own tool mapping, so backfill equals live.

A transcript's tool_use input and its result line's ``toolUseResult`` are what the PreToolUse /
PostToolUse hooks carry as ``tool_input`` and ``tool_response``; handing them to
``producers.collector.tools`` gives imported sessions the very events live sessions get (a Bash
``pytest`` is a command.executed *and* a test.executed, a ``cargo build`` a build.completed...),
so dashboards and failure patterns read both alike. Event ids follow the collector's scheme too
(uuid5 of session, tool_use_id, hook and type): a session seen live and later imported is
counted once by the sinks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from producers.collector import tools as live
from producers.collector.hooks import EVENT_ID_NAMESPACE
from producers.collector.tools import Draft, ToolOutcome

EXCERPT_CHARS = 2_000


@dataclass(frozen=True)
class ToolCall:
    tool_use_id: str
    name: str
    tool_input: dict[str, Any]
    started_us: int
    cwd: str | None = None


@dataclass(frozen=True)
class ToolResult:
    is_error: bool
    text: str
    """The tool_result content as text (what the model saw)."""
    finished_us: int
    structured: Any = None
    """Claude Code's ``toolUseResult`` of the result line: the hook's ``tool_response``."""


def hook_event_id(session_id: str, tool_use_id: str, hook: str, event_type: str) -> str:
    """The id the collector gives the same tool event when it arrives as a hook."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{session_id}/{tool_use_id}/{hook}/{event_type}"))


def unfinished_event_id(session_id: str, tool_use_id: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{session_id}/{tool_use_id}/unfinished"))


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


def started_drafts(call: ToolCall) -> list[Draft]:
    """What the collector publishes at PreToolUse: a subagent task starting."""
    if call.name in live.TASK_TOOLS:
        draft = live.task_started(call.name, call.tool_input)
        draft.task_id = call.tool_use_id
        return [draft]
    return []


def finished_drafts(call: ToolCall, result: ToolResult) -> list[Draft]:
    """What the collector publishes at PostToolUse / PostToolUseFailure for this call."""
    response: Any = result.structured if isinstance(result.structured, Mapping) else None
    if response is None:
        # Older transcripts (or a failure) carry only the text the model saw.
        response = {"stdout": result.text} if call.name == "Bash" and not result.is_error else {}
    interrupted = isinstance(response, Mapping) and response.get("interrupted") is True
    outcome = ToolOutcome(
        failed=result.is_error, error=result.text if result.is_error else None,
        interrupted=interrupted, duration_ms=max(0, result.finished_us - call.started_us) // 1000,
        cwd=call.cwd, excerpt_chars=EXCERPT_CHARS,
    )
    drafts = live.tool_result(call.name, call.tool_input, response, outcome)
    for draft in drafts:
        if call.name in live.TASK_TOOLS:
            draft.task_id = call.tool_use_id
        draft.metadata.setdefault("tool", call.name)
    return drafts


def unfinished_draft(call: ToolCall) -> Draft:
    """A call whose result never came (interrupted, or the file ends mid-call)."""
    doc = {"tool_name": call.name, "tool_input": call.tool_input}
    return Draft("other", {"name": "tool.unfinished", "json": live.other_json(doc)},
                 {"tool": call.name, "outcome": "unfinished"}, severity="warning")
