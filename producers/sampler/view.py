"""The collector's view of live sessions (``GET /api/active-sessions``), parsed and fetched.

The sampler learns session ids, cwds and in-flight Bash calls from the collector, which sees the
hooks (see ``producers.collector.active``). A missing or malformed field is skipped, never fatal:
an older collector without the endpoint just leaves the sampler with environment- and pid-file-
based session matching.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from pipeline.errors import TransientError


@dataclass(frozen=True, slots=True)
class CallInfo:
    tool_use_id: str
    session_id: str
    tool_name: str
    started_us: int
    command: str | None = None
    background: bool = False


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    cwd: str | None
    started_us: int | None
    last_seen_us: int
    calls: tuple[CallInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ActiveView:
    now_us: int
    sessions: tuple[SessionInfo, ...]

    def bash_calls(self) -> dict[str, CallInfo]:
        return {c.tool_use_id: c for s in self.sessions for c in s.calls if c.tool_name == "Bash"}

    def session(self, session_id: str) -> SessionInfo | None:
        return next((s for s in self.sessions if s.session_id == session_id), None)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_view(body: Any) -> ActiveView:
    sessions = []
    items = body.get("sessions") if isinstance(body, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not _str(item.get("session_id")):
            continue
        sid = str(item["session_id"])
        calls = []
        for call in item.get("calls") or []:
            if isinstance(call, dict) and _str(call.get("tool_use_id")):
                calls.append(CallInfo(
                    str(call["tool_use_id"]), sid, _str(call.get("tool_name")) or "",
                    _int(call.get("started_us")), _str(call.get("command")),
                    call.get("background") is True))
        started = item.get("started_us")
        sessions.append(SessionInfo(
            sid, _str(item.get("cwd")), started if isinstance(started, int) else None,
            _int(item.get("last_seen_us")), tuple(calls)))
    now = body.get("now_us") if isinstance(body, dict) else None
    return ActiveView(_int(now), tuple(sessions))


def fetch_view(base_url: str, *, since_us: int, timeout_s: float) -> ActiveView:
    """One blocking GET (run it in a thread); ``TransientError`` when the collector is away."""
    url = f"{base_url}/api/active-sessions?since_us={since_us}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise TransientError(f"collector active sessions unavailable: {type(exc).__name__}") from exc
    return parse_view(body)

