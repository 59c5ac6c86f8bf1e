"""Claude Code hook payloads -> TelemetryEvents (pure, apart from the small state passed in).

``map_hook(payload, ctx, state)`` turns one hook JSON (as posted by an ``http`` hook or read on
stdin by a ``command`` hook) into zero or more complete event dicts. Only ``session_id`` and
``hook_event_name`` are required; everything else is optional so old and new Claude Code versions
map alike. Unknown hook events and unknown tools become ``other`` events: nothing is dropped.

Event ids. A hook carries no id of its own, so:
- tool events use uuid5(session_id, tool_use_id, hook_event_name, event_type): a retried post of
  the same hook yields the same ids, and the sinks (idempotent on event_id) count it once;
- hooks relayed by ``agentwatch hook`` carry a delivery id the command picked once, so its own
  retries (collector slow, then spooled to the inbox) also map to the same ids;
- anything else (an http hook without a tool_use_id) gets a random uuid4.

``HookState`` is the collector's bounded memory: PreToolUse calls waiting for their PostToolUse
(joined on tool_use_id for durations and for inputs an old PostToolUse lacks) and each session's
last known state and start time. A PreToolUse whose PostToolUse never comes (evicted or older
than the TTL) is published as an ``other`` event named ``tool.unfinished``.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline import model
from pipeline.errors import ErrorKind, ItemError
from producers.collector import commands, tools
from producers.collector.tools import Draft, ToolOutcome, as_dict, as_int, as_str, as_text

EVENT_ID_NAMESPACE = uuid.UUID("76ee10d0-41b3-4afd-aa8c-426693572394")
AGENT = "claude-code"
PROMPT_EXCERPT_CHARS = 200


class HookPayloadError(ItemError):
    """A body that is not a hook: not a JSON object, or no session_id / hook_event_name."""

    kind = ErrorKind.MALFORMED_REQUEST


@dataclass(frozen=True)
class HookContext:
    """What the collector knows about one delivery besides its body."""

    received_us: int
    delivery_id: str | None = None
    excerpt_chars: int = 2000


@dataclass
class PendingCall:
    session_id: str
    tool_name: str
    tool_input: dict[str, Any]
    received_us: int
    agent_id: str | None = None


@dataclass
class SessionState:
    state: str = "unknown"
    started_us: int | None = None
    # Where and when the session was last heard of: the host sampler (GET /api/active-sessions)
    # matches agent processes to sessions by them.
    cwd: str | None = None
    transcript_path: str | None = None
    last_seen_us: int = 0


@dataclass
class HookState:
    """Bounded memory across hooks; owned by one thread (the collector's event loop)."""

    max_pending: int = 10_000
    pending_ttl_us: int = 3600 * 1_000_000
    max_sessions: int = 10_000
    pending: OrderedDict[str, PendingCall] = field(default_factory=OrderedDict)
    sessions: OrderedDict[str, SessionState] = field(default_factory=OrderedDict)

    def remember(self, tool_use_id: str, call: PendingCall) -> list[PendingCall]:
        """Keep a PreToolUse; returns the calls pushed out to stay within ``max_pending``."""
        self.pending[tool_use_id] = call
        self.pending.move_to_end(tool_use_id)
        evicted = []
        while len(self.pending) > self.max_pending:
            evicted.append(self.pending.popitem(last=False)[1])
        return evicted

    def take(self, tool_use_id: str | None) -> PendingCall | None:
        return self.pending.pop(tool_use_id, None) if tool_use_id else None

    def expired(self, now_us: int) -> list[tuple[str, PendingCall]]:
        out = []
        while self.pending:
            key, call = next(iter(self.pending.items()))
            if now_us - call.received_us < self.pending_ttl_us:
                break
            out.append((key, self.pending.popitem(last=False)[1]))
        return out

    def session(self, session_id: str) -> SessionState:
        state = self.sessions.get(session_id)
        if state is None:
            state = self.sessions[session_id] = SessionState()
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(session_id)
        return state


def parse_hook(payload: Any) -> tuple[str, str]:
    """(session_id, hook_event_name), or ``HookPayloadError`` saying what is wrong."""
    if not isinstance(payload, dict):
        raise HookPayloadError("hook body must be a JSON object")
    session_id, name = payload.get("session_id"), payload.get("hook_event_name")
    if not isinstance(session_id, str) or not session_id.strip():
        raise HookPayloadError("hook body has no session_id string")
    if not isinstance(name, str) or not name.strip():
        raise HookPayloadError("hook body has no hook_event_name string")
    return session_id, name


def map_hook(payload: Any, ctx: HookContext, state: HookState) -> list[dict[str, Any]]:
    """The events one hook stands for (an empty list for a PreToolUse awaiting its Post)."""
    session_id, name = parse_hook(payload)
    mapper = _MAPPERS.get(name, _unknown_hook)
    drafts, evicted = mapper(payload, ctx, state, session_id)
    if name != "SessionEnd":
        _touch(state.session(session_id), payload, ctx.received_us)
    events = [_envelope(d, payload, ctx, name, i) for i, d in enumerate(drafts)]
    events += [unfinished_event(call, ctx.received_us) for call in evicted]
    return events


def _touch(session: SessionState, payload: Mapping[str, Any], received_us: int) -> None:
    session.last_seen_us = max(session.last_seen_us, received_us)
    session.cwd = as_str(payload.get("cwd")) or session.cwd
    session.transcript_path = as_str(payload.get("transcript_path")) or session.transcript_path


def expire_pending(state: HookState, now_us: int) -> list[dict[str, Any]]:
    """``tool.unfinished`` events for PreToolUse calls whose PostToolUse is overdue."""
    return [unfinished_event(call, now_us, tool_use_id) for tool_use_id, call in state.expired(now_us)]


def unfinished_event(call: PendingCall, now_us: int, tool_use_id: str | None = None) -> dict[str, Any]:
    doc = {"tool_name": call.tool_name, "tool_input": call.tool_input,
           "waited_ms": max(0, (now_us - call.received_us) // 1000)}
    event_id = (str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{call.session_id}/{tool_use_id}/unfinished"))
                if tool_use_id else None)
    return model.new_event(
        "other", call.session_id, {"name": "tool.unfinished", "json": tools.other_json(doc)},
        agent=AGENT, source=model.Source.HOOK.value, timestamp_us=call.received_us,
        event_id=event_id, task_id=call.agent_id, tool_use_id=tool_use_id,
        metadata={"hook": "PreToolUse", "tool": call.tool_name, "outcome": "unfinished"},
        severity=model.Severity.WARNING.value,
    )


# -- envelope --------------------------------------------------------------------------------

def _event_id(payload: Mapping[str, Any], ctx: HookContext, hook: str, event_type: str,
              index: int) -> str:
    session_id = str(payload["session_id"])
    tool_use_id = as_str(payload.get("tool_use_id"))
    if tool_use_id:
        name = f"{session_id}/{tool_use_id}/{hook}/{event_type}"
    elif ctx.delivery_id:
        name = f"{ctx.delivery_id}/{event_type}/{index}"
    else:
        return str(uuid.uuid4())
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def _envelope(draft: Draft, payload: Mapping[str, Any], ctx: HookContext, hook: str,
              index: int) -> dict[str, Any]:
    session_id = str(payload["session_id"])
    metadata = {"hook": hook}
    for key in ("permission_mode", "agent_type"):
        value = as_str(payload.get(key))
        if value:
            metadata[key] = value
    metadata.update(draft.metadata)
    return model.new_event(
        draft.event_type, session_id, draft.payload,
        agent=AGENT, source=model.Source.HOOK.value, severity=draft.severity,
        timestamp_us=ctx.received_us,
        event_id=_event_id(payload, ctx, hook, draft.event_type, index),
        task_id=draft.task_id or as_str(payload.get("agent_id")),
        tool_use_id=as_str(payload.get("tool_use_id")),
        metadata=metadata,
    )


# -- one mapper per hook event -----------------------------------------------------------------

Mapped = tuple[list[Draft], list[PendingCall]]


def _session_start(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    session = state.session(sid)
    session.started_us, session.state = ctx.received_us, "idle"
    model_name = p.get("model")
    if isinstance(model_name, dict):
        model_name = model_name.get("id") or model_name.get("display_name")
    return [Draft("session.started", {
        "reason": as_str(p.get("source")), "cwd": as_str(p.get("cwd")),
        "model": as_str(model_name), "permission_mode": as_str(p.get("permission_mode")),
        "transcript_path": as_str(p.get("transcript_path")),
    })], []


def _session_end(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    session = state.sessions.pop(sid, None)
    started = session.started_us if session else None
    duration = (ctx.received_us - started) // 1000 if started and ctx.received_us >= started else None
    return [Draft("session.ended", {
        "reason": as_str(p.get("reason")), "cwd": as_str(p.get("cwd")),
        "permission_mode": as_str(p.get("permission_mode")),
        "transcript_path": as_str(p.get("transcript_path")), "duration_ms": duration,
    })], []


def _user_prompt(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    state.session(sid).state = "working"
    prompt = as_text(p.get("prompt"))
    return [Draft("user.prompt", {
        "prompt_length": len(prompt),
        "prompt_excerpt": commands.excerpt(prompt, min(PROMPT_EXCERPT_CHARS, ctx.excerpt_chars)),
    })], []


def _pre_tool(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    state.session(sid).state = "working"
    tool = as_str(p.get("tool_name")) or tools.UNKNOWN
    tool_input = as_dict(p.get("tool_input"))
    tool_use_id = as_str(p.get("tool_use_id"))
    evicted: list[PendingCall] = []
    if tool_use_id:
        evicted = state.remember(tool_use_id, PendingCall(
            sid, tool, tool_input, ctx.received_us, as_str(p.get("agent_id"))))
    if tool in tools.TASK_TOOLS:
        draft = tools.task_started(tool, tool_input)
        draft.task_id = tool_use_id
        return [draft], evicted
    return [], evicted


def _post_tool(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    failed = p.get("hook_event_name") == "PostToolUseFailure"
    pending = state.take(as_str(p.get("tool_use_id")))
    tool = as_str(p.get("tool_name")) or (pending.tool_name if pending else tools.UNKNOWN)
    tool_input = as_dict(p.get("tool_input")) or (pending.tool_input if pending else {})
    response = p.get("tool_response")
    duration = as_int(p.get("duration_ms"))
    if duration is None and isinstance(response, dict):
        duration = as_int(response.get("durationMs"))
    if duration is None and pending is not None and ctx.received_us >= pending.received_us:
        duration = (ctx.received_us - pending.received_us) // 1000
    error = p.get("error")
    outcome = ToolOutcome(
        failed=failed, error=error if isinstance(error, str) else None,
        interrupted=p.get("is_interrupt") is True, duration_ms=tools.non_negative(duration),
        cwd=as_str(p.get("cwd")), excerpt_chars=ctx.excerpt_chars)
    drafts = tools.tool_result(tool, tool_input, response, outcome)
    if tool in tools.TASK_TOOLS:
        for draft in drafts:
            draft.task_id = as_str(p.get("tool_use_id"))
    drafts[0].metadata.setdefault("tool", tool)
    return drafts, []


def _notification(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    kind = as_str(p.get("notification_type"))
    message = as_text(p.get("message"))
    if kind == "permission_prompt" or "permission" in message.lower():
        state.session(sid).state = "waiting"
    elif kind == "idle_prompt":
        state.session(sid).state = "idle"
    return [Draft("notification", {"message": message, "notification_type": kind,
                                   "title": as_str(p.get("title"))})], []


def _transition(state: HookState, sid: str, to_state: str, reason: str | None,
                agent_name: str = AGENT) -> Draft:
    session = state.session(sid)
    from_state, session.state = session.state, to_state
    return Draft("agent.state.transition", {"agent_name": agent_name, "from_state": from_state,
                                            "to_state": to_state, "reason": reason})


def _stop(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    reason = "stop_hook_active" if p.get("stop_hook_active") is True else "stop"
    return [_transition(state, sid, "idle", reason)], []


def _stop_failure(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    error = as_str(p.get("error")) or "api_error"
    details = p.get("error_details")
    details_text = details if isinstance(details, str) else (
        tools.other_json(details) if details is not None else None)
    failed = Draft("agent.task.failed", {
        "agent_name": AGENT, "task_type": "turn", "error_type": error,
        "error_message": commands.excerpt(details_text or "", 500),
    })
    return [failed, _transition(state, sid, "error", error)], []


def _subagent(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    starting = p.get("hook_event_name") == "SubagentStart"
    draft = Draft("agent.state.transition", {
        "agent_name": as_str(p.get("agent_type")) or "subagent",
        "from_state": "starting" if starting else "working",
        "to_state": "working" if starting else "stopped",
        "reason": "subagent_start" if starting else (
            "stop_hook_active" if p.get("stop_hook_active") is True else "subagent_stop"),
    }, task_id=as_str(p.get("agent_id")))
    return [draft], []


def _pre_compact(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    return [_transition(state, sid, "compacting", as_str(p.get("trigger")) or "compact")], []


def _unknown_hook(p: dict[str, Any], ctx: HookContext, state: HookState, sid: str) -> Mapped:
    name = str(p["hook_event_name"])
    return [Draft("other", {"name": f"hook.{name}", "json": tools.other_json(p)})], []


_MAPPERS = {
    "SessionStart": _session_start,
    "SessionEnd": _session_end,
    "UserPromptSubmit": _user_prompt,
    "PreToolUse": _pre_tool,
    "PostToolUse": _post_tool,
    "PostToolUseFailure": _post_tool,
    "Notification": _notification,
    "Stop": _stop,
    "StopFailure": _stop_failure,
    "SubagentStart": _subagent,
    "SubagentStop": _subagent,
    "PreCompact": _pre_compact,
}
