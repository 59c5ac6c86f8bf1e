"""``GET /api/active-sessions``: what the collector knows about live sessions, for the host sampler.

The sampler (``producers.sampler``) watches the agent's processes but cannot see session ids or
tool calls; the collector sees both in the hooks. This read-only view joins them: each session's
cwd, transcript path and last hook time, and the tool calls whose PreToolUse arrived without a
PostToolUse yet (with the Bash command text, bounded, so the sampler can tell which new shell
runs which call). It is served on the collector's own listener (loopback by default), which
already receives the same text in the hooks; nothing here is published anywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from producers.collector.hooks import HookState
from producers.collector.tools import as_str

COMMAND_CHARS = 4096
DEFAULT_LIMIT = 1000


def active_sessions(state: HookState, now_us: int, *, since_us: int = 0,
                    limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Sessions heard of at or after ``since_us`` (most recent first, at most ``limit``), each with
    its in-flight tool calls; calls of sessions the state forgot are listed under their id too."""
    calls: dict[str, list[dict[str, Any]]] = {}
    for tool_use_id, call in state.pending.items():
        entry: dict[str, Any] = {"tool_use_id": tool_use_id, "tool_name": call.tool_name,
                                 "started_us": call.received_us, "agent_id": call.agent_id}
        if call.tool_name == "Bash":
            command = as_str(call.tool_input.get("command"))
            entry["command"] = command[:COMMAND_CHARS] if command else None
            entry["background"] = call.tool_input.get("run_in_background") is True
        calls.setdefault(call.session_id, []).append(entry)
    sessions: list[dict[str, Any]] = []
    for session_id, session in reversed(state.sessions.items()):
        if len(sessions) >= limit:
            break
        if session.last_seen_us < since_us and session_id not in calls:
            continue
        sessions.append({"session_id": session_id, "cwd": session.cwd,
                         "transcript_path": session.transcript_path, "state": session.state,
                         "started_us": session.started_us, "last_seen_us": session.last_seen_us,
                         "calls": calls.pop(session_id, [])})
    for session_id, orphans in calls.items():
        if len(sessions) >= limit:
            break
        sessions.append({"session_id": session_id, "cwd": None, "transcript_path": None,
                         "state": "unknown", "started_us": None,
                         "last_seen_us": max(c["started_us"] for c in orphans), "calls": orphans})
    return {"now_us": now_us, "sessions": sessions}


def handler(state: HookState,
            clock_us: Callable[[], int]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler over the collector's hook state (read on the loop that owns it)."""

    async def active_handler(request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since_us", "0"))
            limit = int(request.query.get("limit", str(DEFAULT_LIMIT)))
        except ValueError:
            return web.json_response({"error": "bad_query",
                                      "detail": "since_us and limit are integers"}, status=400)
        body = active_sessions(state, clock_us(), since_us=since,
                               limit=max(1, min(limit, DEFAULT_LIMIT)))
        return web.json_response(body)

    return active_handler
