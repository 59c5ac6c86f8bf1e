"""Which session an agent process belongs to (pure: evidence in, assignment out).

Claude Code does not put its session id where an outside process can read it, so the sampler
gathers evidence per agent process and decides here, strongest first:

1. ``CLAUDE_CODE_SESSION_ID`` in the environment of a child it spawned (Claude Code >= 2.1.132
   sets it for Bash tool commands and hooks; ``AGENTWATCH_SESSION_ID`` works for any agent):
   exact, and it follows ``/clear`` because every command gets the current id.
2. A child matched to an in-flight Bash call of a session (command text, see ``calls``).
3. ``~/.claude/sessions/<pid>.json`` (``sessionId``): written at start, not updated by ``/clear``.
4. The working directory: the process's cwd equals (or contains) a session's hook cwd.

The newest strong evidence (1, 2) wins. A session named by strong evidence that the collector no
longer lists (it ended: ``/clear`` ends one session and starts another in the same process) gives
way to a newer unclaimed session in the same directory. Weak evidence (3, 4) never takes a
session another process holds by strong evidence; among several cwd matches the most recently
active session wins. A process nothing matches gets no session, and no events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from producers.sampler.view import ActiveView, SessionInfo

Key = tuple[int, float]


@dataclass(slots=True)
class Evidence:
    cwd: str | None = None
    env_session: tuple[str, float] | None = None
    """(session id, when seen): from a child's environment."""
    call_session: tuple[str, float] | None = None
    """(session id, when seen): from a matched Bash call."""
    pidfile_session: str | None = None

    def strong(self) -> tuple[str, float] | None:
        found = [e for e in (self.env_session, self.call_session) if e is not None]
        return max(found, key=lambda e: e[1]) if found else None


def _related(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    a, b = a.rstrip("/") or "/", b.rstrip("/") or "/"
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _newest(sessions: list[SessionInfo]) -> SessionInfo | None:
    return max(sessions, key=lambda s: (s.last_seen_us, s.started_us or 0), default=None)


def resolve(agents: Mapping[Key, Evidence], view: ActiveView | None) -> dict[Key, str]:
    listed = {s.session_id: s for s in view.sessions} if view is not None else {}
    out: dict[Key, str] = {}
    claimed: set[str] = set()
    for key, ev in agents.items():
        strong = ev.strong()
        if strong is not None and (strong[0] in listed or view is None):
            out[key] = strong[0]
            claimed.add(strong[0])
    for key, ev in sorted(agents.items(), key=lambda kv: kv[0]):
        if key in out:
            continue
        strong = ev.strong()
        free = [s for s in listed.values() if s.session_id not in claimed]
        if strong is not None:
            # The strongly named session ended: its successor in the same directory, if any.
            since_us = int(strong[1] * 1_000_000)
            after = [s for s in free if (s.started_us or s.last_seen_us) >= since_us
                     and _related(s.cwd, ev.cwd)]
            successor = _newest(after)
            chosen = successor.session_id if successor is not None else strong[0]
        elif ev.pidfile_session is not None and ev.pidfile_session not in claimed and (
                view is None or ev.pidfile_session in listed):
            chosen = ev.pidfile_session
        else:
            match = _newest([s for s in free if _related(s.cwd, ev.cwd)])
            if match is None:
                continue
            chosen = match.session_id
        out[key] = chosen
        claimed.add(chosen)
    return out
