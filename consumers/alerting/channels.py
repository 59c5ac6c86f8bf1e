"""The notification channel contract, the terminal channel and the alert renderings they share."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

Alert = dict[str, Any]

SEVERITY_RANK = {"debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4}


class Channel(Protocol):
    """Delivers one alert. ``deliver`` returns once the alert is delivered (or durably queued for a
    digest); it raises ``pipeline.errors.DeliveryError`` when the alert cannot be delivered, after
    the channel's own retries, and the dispatcher then dead-letters it."""

    name: str

    async def deliver(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


def when(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1_000_000))


def one_line(alert: Alert) -> str:
    return (f"[{when(alert['detected_at'])}] {str(alert['severity']).upper()} {alert['pattern']} "
            f"session={alert['session_id']} agent={alert['agent']}: {alert['message']}")


def text_block(alert: Alert) -> str:
    lines = [one_line(alert)]
    if alert.get("suggested_mitigation"):
        lines.append(f"  mitigation: {alert['suggested_mitigation']}")
    if alert.get("evidence_event_ids"):
        lines.append(f"  evidence: {', '.join(alert['evidence_event_ids'])}")
    return "\n".join(lines)


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Incoming-webhook shape: ``text`` is the notification fallback, blocks the rich message."""
    icon = {"critical": ":rotating_light:", "error": ":x:", "warning": ":warning:"}.get(
        str(alert["severity"]), ":information_source:")
    head = f"{icon} *{alert['pattern']}* in session `{alert['session_id']}` ({alert['agent']})"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{head}\n{alert['message']}"}},
    ]
    if alert.get("suggested_mitigation"):
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"*Mitigation:* {alert['suggested_mitigation']}"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"{alert['severity']} · {when(alert['detected_at'])} · alert {alert['alert_id']}")}]})
    return {"text": f"{alert['pattern']}: {alert['message']}", "blocks": blocks}


class TerminalChannel:
    """Prints alerts for whoever watches the consumer's terminal (stdout; logs go to stderr)."""

    name = "terminal"

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    async def deliver(self, alert: Alert) -> None:
        self._out.write(text_block(alert) + "\n")
        self._out.flush()

    async def close(self) -> None:
        return None
