"""Email digest channel: alerts are queued durably and mailed together every digest interval.

``deliver`` appends the alert to a pending file (fsynced) and returns, so the consumer may commit
its offset: the alert is safe before the mail goes out. ``flush`` sends everything pending as one
message through SMTP (stdlib smtplib in a worker thread, so the loop never blocks) and empties the
file; after ``max_attempts`` failed digests the pending alerts are handed to ``on_give_up``
(the dead-letter file) instead of growing forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from consumers.alerting.channels import SEVERITY_RANK, Alert, text_block
from pipeline.errors import DeliveryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0


def render_digest(alerts: Sequence[Alert], sender: str, recipients: Sequence[str]) -> EmailMessage:
    worst = max((str(a["severity"]) for a in alerts), key=lambda s: SEVERITY_RANK.get(s, 0))
    sessions = sorted({a["session_id"] for a in alerts})
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = (f"[agentwatch] {len(alerts)} alert{'s' * (len(alerts) != 1)} "
                      f"({worst}) in {len(sessions)} session{'s' * (len(sessions) != 1)}")
    body = [f"{len(alerts)} alerts since the last digest.", ""]
    for session in sessions:
        body.append(f"Session {session}")
        body += [text_block(a) for a in alerts if a["session_id"] == session]
        body.append("")
    msg.set_content("\n".join(body))
    return msg


def _send(cfg: SmtpConfig, msg: EmailMessage) -> None:
    with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
        if cfg.starttls:
            smtp.starttls()
        if cfg.username:
            smtp.login(cfg.username, cfg.password or "")
        smtp.send_message(msg)


class EmailDigestChannel:
    name = "email"

    def __init__(self, cfg: SmtpConfig, pending_file: Path, *, max_attempts: int = 3,
                 on_give_up: Callable[[Sequence[Alert], str], None] | None = None) -> None:
        if not cfg.recipients:
            raise DeliveryError("email channel needs at least one recipient (alerts.smtp_to)")
        self._cfg = cfg
        self._path = pending_file
        self._max_attempts = max_attempts
        self._on_give_up = on_give_up
        self._lock = asyncio.Lock()
        self._failures = 0
        self.sent_digests = 0
        self._path.parent.mkdir(parents=True, exist_ok=True)

    def pending(self) -> list[Alert]:
        if not self._path.exists():
            return []
        out = []
        for line in self._path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    async def deliver(self, alert: Alert) -> None:
        async with self._lock:
            await asyncio.to_thread(self._append, alert)

    def _append(self, alert: Alert) -> None:
        with self._path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(alert, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def flush(self) -> int:
        """Mail one digest of everything pending; returns how many alerts it carried."""
        async with self._lock:
            alerts = await asyncio.to_thread(self.pending)
            if not alerts:
                return 0
            msg = render_digest(alerts, self._cfg.sender, self._cfg.recipients)
            try:
                await asyncio.to_thread(_send, self._cfg, msg)
            except (OSError, smtplib.SMTPException) as exc:
                self._failures += 1
                log.warning("email digest failed", extra={
                    "error": f"{type(exc).__name__}: {exc}", "attempt": self._failures,
                    "alerts": len(alerts)})
                if self._failures < self._max_attempts:
                    return 0
                if self._on_give_up is not None:
                    self._on_give_up(alerts, f"SMTP {self._cfg.host}:{self._cfg.port}: {exc}")
                sent = 0
            else:
                self.sent_digests += 1
                sent = len(alerts)
            self._failures = 0
            await asyncio.to_thread(self._path.unlink, True)
            return sent

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Digest timer; a last digest goes out on stop."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            await self.flush()

    async def close(self) -> None:
        return None
