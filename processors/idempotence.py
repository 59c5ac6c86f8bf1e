"""Replay guard for the worker's table state: fold each event into a session's state once.

Faust commits source offsets after the changelog writes are flushed, so after a crash the
recovered state can be *ahead* of the committed offset and the events in between arrive again.
The state therefore records the last (partition, offset) folded in and skips anything at or
before it; a bounded list of recent event ids also drops a producer's re-sent duplicates (same
event id, new offset). Both live inside the table value, so they survive restarts with it.
"""

from __future__ import annotations

from typing import Any

RECENT_IDS = 32
"""Re-sent duplicates (a producer's retry, a spool's re-send) arrive close together; older ones
are the sinks' problem. Small: the list is part of every changelog write of the state."""


def already_folded(state: dict[str, Any], partition: int, offset: int, event_id: str) -> bool:
    pos = state.get("pos")
    if pos is not None and pos[0] == partition and offset <= pos[1]:
        return True
    return event_id in state.get("recent", ())


def remember(state: dict[str, Any], partition: int, offset: int, event_id: str) -> None:
    state["pos"] = [partition, offset]
    recent = state.setdefault("recent", [])
    recent.append(event_id)
    if len(recent) > RECENT_IDS:
        del recent[: len(recent) - RECENT_IDS]
