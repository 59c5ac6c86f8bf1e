"""How a replay is recognised across stages: the marks on replayed events and the replay view's id.

The archive's replay engine (consumers/archive/replay.py) marks every re-emitted event; the
worker's replay agent (processors/replay_agent.py) folds them into widgets published under a
*replay view* session id; the gateway (consumers/gateway/feed.py) routes records of a replay
view to the replay that asked for them instead of its live state. The three meet only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REPLAY_FLAG = "replay"
"""Metadata key set to ``"1"`` on every replayed event."""
REPLAY_ID = "replay_id"
"""Metadata key (and Kafka header) carrying the replay's id."""
VIEW_PREFIX = "replay:"
"""Session ids starting with this are replay views, never live sessions (reserved)."""


def is_replay(event: Mapping[str, Any]) -> bool:
    """True for an event that came out of a replay; live aggregates must skip these."""
    metadata = event.get("metadata") or {}
    return bool(metadata.get(REPLAY_FLAG) == "1")


def replay_id_of(event: Mapping[str, Any]) -> str | None:
    """The replay id a replayed event carries (None for a live event or one without an id)."""
    if not is_replay(event):
        return None
    rid = (event.get("metadata") or {}).get(REPLAY_ID)
    return str(rid) if rid else None


def view_session_id(replay_id: str) -> str:
    """The session id under which a replay's widgets are published on the widgets topic."""
    return VIEW_PREFIX + replay_id


def view_replay_id(session_id: str) -> str | None:
    """The replay id of a replay view's session id; None for a live session id."""
    if session_id.startswith(VIEW_PREFIX) and len(session_id) > len(VIEW_PREFIX):
        return session_id[len(VIEW_PREFIX):]
    return None
