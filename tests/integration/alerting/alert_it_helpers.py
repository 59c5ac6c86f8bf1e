"""Helpers of the alerting integration test (receivers, alerts)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

T0 = 1_700_000_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Hook:
    url: str
    fail_first: int = 0
    """Answer 503 to this many POSTs before accepting."""
    status_for: dict[str, int] = field(default_factory=dict)
    """alert_id (or Slack text substring) -> fixed status, e.g. 400 for a permanent refusal."""
    received: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0


@dataclass
class Mailbox:
    port: int
    messages: list[Message] = field(default_factory=list)


def alert(alert_id: str, severity: str = "warning", session: str = "s-1") -> dict[str, Any]:
    return {"alert_id": alert_id, "pattern": "compile_fix_loop", "session_id": session,
            "agent": "main", "severity": severity, "window_start": T0, "window_end": T0,
            "evidence_event_ids": ["e1", "e2"], "message": "4 compile errors within 5 minutes",
            "suggested_mitigation": "pause it", "detected_at": T0}
