"""Fill what producers left out, from what the event itself says; never overwrite what they set.

Pure and cheap: runs on every event before validation, so an event whose producer forgot the
agent name is repaired instead of dead-lettered. Metadata (git branch, commit, remote...) is
carried over untouched.
"""

from __future__ import annotations

from typing import Any

from pipeline import model

UNKNOWN_AGENT = "unknown"

_AGENT_METADATA_KEYS = ("agent", "agent_name", "agent.name")
_SEVERITY_RANK = {s.value: i for i, s in enumerate(model.Severity)}


def enrich(event: dict[str, Any]) -> dict[str, Any]:
    """The event with ``agent`` and ``severity`` defaulted; the input is not mutated."""
    updates: dict[str, Any] = {}
    agent = event.get("agent")
    if not agent or agent == UNKNOWN_AGENT:
        guessed = agent_from_payload(event)
        if guessed and guessed != agent:
            updates["agent"] = guessed
    severity = event.get("severity")
    inferred = _severity(event, severity)
    if inferred is not None:
        updates["severity"] = inferred
    if not updates:
        return event
    out = dict(event)
    out.update(updates)
    return out


def agent_from_payload(event: dict[str, Any]) -> str:
    """The agent named by the payload or metadata; ``unknown`` when nothing names one."""
    payload = event.get("payload")
    if isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[1], dict):
        name = payload[1].get("agent_name")
        if isinstance(name, str) and name.strip():
            return name.strip()
    metadata = event.get("metadata")
    if isinstance(metadata, dict):
        for key in _AGENT_METADATA_KEYS:
            value = metadata.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return UNKNOWN_AGENT


def _severity(event: dict[str, Any], severity: Any) -> str | None:
    """A severity to set, or ``None`` to keep the producer's.

    Missing (``None``/empty) is inferred from the event type and payload. ``info`` is also the
    Avro default, i.e. what a producer that did not say gets on the wire, so it is *raised* when
    the event itself shows a failure (a failed command, a failed build); never lowered.
    """
    event_type = event.get("event_type")
    if not isinstance(event_type, str):
        return None
    payload = event.get("payload")
    inferred = model.infer_severity(
        event_type, payload if isinstance(payload, tuple) and len(payload) == 2 else None
    )
    if not severity:
        return inferred
    if severity == model.Severity.INFO.value and (
        _SEVERITY_RANK[inferred] > _SEVERITY_RANK[model.Severity.INFO.value]
    ):
        return inferred
    return None
