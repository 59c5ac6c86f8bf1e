"""Transcript lines to TelemetryEvents: pure and deterministic, one mapper per file.

* tool_use (assistant line) + tool_result (later user line) -> the events the collector makes of
  the same call's PreToolUse / PostToolUse hooks (``tools``), timed at the result line; a call
  whose result never comes becomes ``tool.unfinished``, like a hook whose Post never arrives;
* assistant ``message.usage`` -> one ``llm.request`` per API response. Claude Code writes one
  line per content block and repeats the response's usage on each, with ``output_tokens`` still
  growing while it streams, so lines are folded by (message.id, requestId) keeping each counter's
  maximum, and emitted when the file ends (or when too many are pending: memory stays bounded);
* a user line with text -> ``user.prompt``; the main file's first and last lines ->
  ``session.started`` / ``session.ended`` (inferred, marked in metadata).

Every event_id is a UUIDv5 of what the event describes (tool events: the collector's scheme over
session, tool_use_id and hook; usage: the response's ids; prompts: the line's uuid), so
importing a file twice yields the same ids and the sinks, idempotent on event_id, keep one copy.
"""

from __future__ import annotations

import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import model
from pipeline.errors import ItemError
from pipeline.validation import validate_event
from producers.collector.tools import Draft
from producers.transcripts.lines import Line, parse_timestamp
from producers.transcripts.tools import (
    ToolCall,
    ToolResult,
    finished_drafts,
    hook_event_id,
    result_text,
    started_drafts,
    unfinished_draft,
    unfinished_event_id,
)

Event = dict[str, Any]

TRANSCRIPT_NAMESPACE = uuid.UUID("9f6c1f9e-3a0b-5d7e-8c41-2b6f0e7d1a53")
"""Namespace of transcript event ids; never change it, or re-imports stop deduplicating."""

KNOWN_IGNORED_TYPES = frozenset({
    "summary", "system", "file-history-snapshot", "progress", "attachment", "permission-mode",
    "last-prompt", "custom-title", "mode", "checkpoint", "queue-operation",
    "marble-origami-commit", "marble-origami-snapshot", "agent-name", "tag",
})
"""Line types Claude Code writes that carry no event for us (metadata, undo, compaction)."""

PROMPT_EXCERPT_CHARS = 200
SAMPLE_LIMIT = 10
SYNTHETIC_MODEL = "<synthetic>"


def stable_event_id(key: str) -> str:
    return str(uuid.uuid5(TRANSCRIPT_NAMESPACE, key))


@dataclass(frozen=True)
class FileContext:
    """What the path says about a transcript file."""

    path: Path
    session_hint: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None

    @property
    def is_subagent(self) -> bool:
        return self.agent_id is not None


@dataclass
class FileStats:
    lines: int = 0
    bad_lines: int = 0
    bad_samples: list[str] = field(default_factory=list)
    unknown_types: Counter[str] = field(default_factory=Counter)
    ignored_types: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    usage_lines_folded: int = 0
    duplicate_tool_results: int = 0
    unpaired_tool_uses: int = 0
    orphan_tool_results: int = 0
    invalid_events: int = 0
    invalid_samples: list[str] = field(default_factory=list)

    def bad(self, number: int, reason: str) -> None:
        self.bad_lines += 1
        if len(self.bad_samples) < SAMPLE_LIMIT:
            self.bad_samples.append(f"line {number}: {reason}")


@dataclass
class _Usage:
    timestamp: int
    session_id: str
    model: str
    message_id: str | None
    request_id: str | None
    prompt_id: str | None
    sidechain: bool
    counters: dict[str, int]
    cost_usd: float | None


@dataclass(frozen=True)
class _Pending:
    call: ToolCall
    session_id: str
    prompt_id: str | None
    sidechain: bool


_USAGE_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_creation_tokens",
}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class TranscriptMapper:
    """Feed a file's lines in order with ``feed``, then call ``finish`` once."""

    def __init__(self, ctx: FileContext, *, max_pending_usage: int = 10_000,
                 max_pending_tools: int = 10_000) -> None:
        self.ctx = ctx
        self.stats = FileStats()
        self._max_pending_usage = max_pending_usage
        self._max_pending_tools = max_pending_tools
        self._usage: OrderedDict[str, _Usage] = OrderedDict()
        self._tools: dict[str, _Pending] = {}
        self._done_tools: set[str] = set()
        self._last_ts: int | None = None
        self._first_ts: int | None = None
        self._session_id: str | None = None
        self._cwd: str | None = None
        self._model: str | None = None
        self._permission_mode: str | None = None

    # -- envelope -------------------------------------------------------------------------

    def _metadata(self, sidechain: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        meta: dict[str, str] = {}
        if self.ctx.agent_id:
            meta["agent_id"] = self.ctx.agent_id
        if self.ctx.agent_type:
            meta["agent_type"] = self.ctx.agent_type
        if sidechain:
            meta["sidechain"] = "true"
        meta.update(extra or {})
        return meta

    def _event(
        self, event_type: str, key: str, ts: int, session_id: str, payload: dict[str, Any], *,
        sidechain: bool = False, prompt_id: str | None = None, tool_use_id: str | None = None,
        severity: str | None = None, metadata: Mapping[str, str] | None = None,
        event_id: str | None = None, task_id: str | None = None,
    ) -> Event | None:
        """``key`` names the event (its id is derived from it) unless ``event_id`` is given."""
        try:
            event = model.new_event(
                event_type, session_id, payload, source=model.Source.TRANSCRIPT.value,
                event_id=event_id or stable_event_id(key), timestamp_us=ts, severity=severity,
                prompt_id=prompt_id, tool_use_id=tool_use_id,
                task_id=task_id or self.ctx.agent_id,
                metadata=self._metadata(sidechain, metadata),
            )
            event = validate_event(event)
        except ItemError as exc:
            self.stats.invalid_events += 1
            if len(self.stats.invalid_samples) < SAMPLE_LIMIT:
                self.stats.invalid_samples.append(f"{event_type} {key}: {exc}")
            return None
        self.stats.events[event_type] += 1
        return event

    # -- lines ----------------------------------------------------------------------------

    def feed(self, line: Line) -> list[Event]:
        self.stats.lines += 1
        record = line.record
        if record is None:
            self.stats.bad(line.number, line.error or "unreadable")
            return []
        kind = record["type"]
        if kind not in ("user", "assistant"):
            if kind in KNOWN_IGNORED_TYPES:
                self.stats.ignored_types[kind] += 1
            else:
                self.stats.unknown_types[kind] += 1
            return []
        message = record.get("message")
        if not isinstance(message, Mapping):
            self.stats.bad(line.number, f"{kind} line without a message object")
            return []
        ts = parse_timestamp(record.get("timestamp"))
        if ts is None:
            ts = self._last_ts
            if ts is None:
                self.stats.bad(line.number, "no usable timestamp")
                return []
        session_id = _str(record.get("sessionId")) or self.ctx.session_hint
        if session_id is None:
            self.stats.bad(line.number, "no sessionId")
            return []
        self._note(ts, session_id, record)
        if kind == "assistant":
            return self._assistant(record, message, ts, session_id)
        return self._user(line.number, record, message, ts, session_id)

    def _note(self, ts: int, session_id: str, record: Mapping[str, Any]) -> None:
        self._last_ts = max(ts, self._last_ts or ts)
        self._first_ts = min(ts, self._first_ts or ts)
        self._session_id = self._session_id or session_id
        self._cwd = self._cwd or _str(record.get("cwd"))
        self._permission_mode = self._permission_mode or _str(record.get("permissionMode"))

    def _assistant(
        self, record: Mapping[str, Any], message: Mapping[str, Any], ts: int, session_id: str
    ) -> list[Event]:
        sidechain = record.get("isSidechain") is True
        prompt_id = _str(record.get("promptId"))
        content = message.get("content")
        out: list[Event] = []
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, Mapping) or block.get("type") != "tool_use":
                continue
            tool_id, name = _str(block.get("id")), _str(block.get("name"))
            if tool_id is None or name is None:
                continue
            tool_input = block.get("input")
            call = ToolCall(tool_id, name, dict(tool_input) if isinstance(tool_input, Mapping) else {},
                            ts, _str(record.get("cwd")))
            pending = _Pending(call, session_id, prompt_id, sidechain)
            out += self._remember(tool_id, pending)
            out += self._tool_events(pending, started_drafts(call), "PreToolUse", ts)
        model_name = _str(message.get("model"))
        usage = message.get("usage")
        if not isinstance(usage, Mapping) or model_name is None or model_name == SYNTHETIC_MODEL:
            return out
        self._model = self._model or model_name
        return out + self._fold_usage(record, message, usage, ts, session_id,
                                      model_name=model_name, sidechain=sidechain)

    def _remember(self, tool_id: str, pending: _Pending) -> list[Event]:
        self._tools[tool_id] = pending
        out: list[Event] = []
        while len(self._tools) > self._max_pending_tools:
            # Calls whose result never came: published as unfinished rather than kept forever.
            out += self._unfinished(self._tools.pop(next(iter(self._tools))))
        return out

    def _fold_usage(
        self, record: Mapping[str, Any], message: Mapping[str, Any], usage: Mapping[str, Any],
        ts: int, session_id: str, *, model_name: str, sidechain: bool,
    ) -> list[Event]:
        message_id, request_id = _str(message.get("id")), _str(record.get("requestId"))
        if message_id is None and request_id is None:
            key = f"llm:line:{_str(record.get('uuid')) or f'{session_id}:{ts}'}"
        else:
            key = f"llm:{message_id}:{request_id}"
        counters = {ours: _count(usage.get(theirs)) for theirs, ours in _USAGE_FIELDS.items()}
        cost = record.get("costUSD")
        cost_usd = float(cost) if isinstance(cost, (int, float)) and cost >= 0 else None
        seen = self._usage.get(key)
        if seen is not None:
            self.stats.usage_lines_folded += 1
            for name, value in counters.items():
                seen.counters[name] = max(seen.counters[name], value)
            if cost_usd is not None:
                seen.cost_usd = max(seen.cost_usd or 0.0, cost_usd)
            return []
        self._usage[key] = _Usage(ts, session_id, model_name, message_id, request_id,
                                  _str(record.get("promptId")), sidechain, counters, cost_usd)
        out: list[Event] = []
        while len(self._usage) > self._max_pending_usage:
            # The oldest response finished streaming long ago; its counters are final.
            old_key, old = self._usage.popitem(last=False)
            event = self._usage_event(old_key, old)
            if event is not None:
                out.append(event)
        return out

    def _usage_event(self, key: str, usage: _Usage) -> Event | None:
        payload = {"model": usage.model, **usage.counters, "cost_usd": usage.cost_usd,
                   "request_id": usage.request_id}
        extra = {"message_id": usage.message_id} if usage.message_id else {}
        return self._event("llm.request", key, usage.timestamp, usage.session_id, payload,
                           sidechain=usage.sidechain, prompt_id=usage.prompt_id, metadata=extra)

    def _user(
        self, number: int, record: Mapping[str, Any], message: Mapping[str, Any], ts: int,
        session_id: str,
    ) -> list[Event]:
        content = message.get("content")
        blocks = [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if results:
            structured = record.get("toolUseResult") if len(results) == 1 else None
            return [e for block in results for e in self._tool_result(block, structured, ts)]
        if record.get("isMeta") is True or record.get("isCompactSummary") is True:
            return []
        if self.ctx.is_subagent:
            return []  # a subagent's first user line is its delegated task, not a human prompt
        if isinstance(content, str):
            text = content
        else:
            text = "\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        if not text.strip():
            return []
        key = f"prompt:{_str(record.get('uuid')) or f'{self.ctx.path.name}:{number}'}"
        payload = {"prompt_length": len(text), "prompt_excerpt": text[:PROMPT_EXCERPT_CHARS]}
        event = self._event("user.prompt", key, ts, session_id, payload,
                            sidechain=record.get("isSidechain") is True,
                            prompt_id=_str(record.get("promptId")))
        return [event] if event is not None else []

    def _tool_result(self, block: Mapping[str, Any], structured: Any, ts: int) -> list[Event]:
        tool_id = _str(block.get("tool_use_id"))
        pending = self._tools.pop(tool_id, None) if tool_id else None
        if pending is None:
            if tool_id in self._done_tools:
                self.stats.duplicate_tool_results += 1
            else:
                self.stats.orphan_tool_results += 1
            return []
        self._done_tools.add(pending.call.tool_use_id)
        is_error = block.get("is_error") is True
        result = ToolResult(is_error=is_error, text=result_text(block.get("content")),
                            finished_us=ts, structured=structured)
        hook = "PostToolUseFailure" if is_error else "PostToolUse"
        return self._tool_events(pending, finished_drafts(pending.call, result), hook, ts)

    def _tool_events(self, pending: _Pending, drafts: list[Draft], hook: str,
                     ts: int) -> list[Event]:
        call, out = pending.call, []
        for draft in drafts:
            event = self._event(
                draft.event_type, "", ts, pending.session_id, draft.payload,
                sidechain=pending.sidechain, prompt_id=pending.prompt_id,
                tool_use_id=call.tool_use_id, severity=draft.severity, metadata=draft.metadata,
                event_id=hook_event_id(pending.session_id, call.tool_use_id, hook,
                                       draft.event_type),
                task_id=draft.task_id,
            )
            if event is not None:
                out.append(event)
        return out

    def _unfinished(self, pending: _Pending) -> list[Event]:
        self.stats.unpaired_tool_uses += 1
        draft = unfinished_draft(pending.call)
        event = self._event(
            draft.event_type, "", pending.call.started_us, pending.session_id, draft.payload,
            sidechain=pending.sidechain, prompt_id=pending.prompt_id,
            tool_use_id=pending.call.tool_use_id, severity=draft.severity,
            metadata=draft.metadata,
            event_id=unfinished_event_id(pending.session_id, pending.call.tool_use_id))
        return [event] if event is not None else []

    # -- end of file ----------------------------------------------------------------------

    def finish(self) -> list[Event]:
        out: list[Event | None] = []
        for pending in self._tools.values():
            # Interrupted, or the file ends mid-call (a live session): the call still happened.
            out += self._unfinished(pending)
        self._tools.clear()
        while self._usage:
            key, usage = self._usage.popitem(last=False)
            out.append(self._usage_event(key, usage))
        out.extend(self._session_events())
        return [e for e in out if e is not None]

    def _session_events(self) -> list[Event | None]:
        if self.ctx.is_subagent or self._session_id is None or self._first_ts is None:
            return []
        sid, first, last = self._session_id, self._first_ts, self._last_ts or self._first_ts
        common = {"cwd": self._cwd, "model": self._model, "permission_mode": self._permission_mode,
                  "transcript_path": str(self.ctx.path)}
        inferred = {"inferred_from": "transcript"}
        return [
            self._event("session.started", f"session.started:{sid}", first, sid, common,
                        metadata=inferred),
            self._event("session.ended", f"session.ended:{sid}", last, sid,
                        {**common, "duration_ms": (last - first) // 1000}, metadata=inferred),
        ]
