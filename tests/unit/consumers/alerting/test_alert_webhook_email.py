from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alerting_peers import Hook, Mailbox, alert, free_port

from consumers.alerting.email import EmailDigestChannel, SmtpConfig
from consumers.alerting.webhook import WebhookChannel
from pipeline.errors import DeliveryError
from pipeline.retry import RetryPolicy

FAST = RetryPolicy(initial_s=0.01, max_s=0.05, max_attempts=4)


async def test_webhook_retries_until_the_receiver_accepts(webhook: Hook) -> None:
    webhook.fail_first = 2
    ch = WebhookChannel(webhook.url, policy=FAST)
    try:
        await ch.deliver(alert("1"))
    finally:
        await ch.close()
    assert webhook.posts == 3
    assert [b["alert_id"] for b in webhook.received] == ["1"]
    assert webhook.received[0]["kind"] == "agentwatch.alert"
    assert webhook.received[0]["evidence_event_ids"] == ["e1", "e2"]


async def test_webhook_gives_up_after_its_attempts(webhook: Hook) -> None:
    webhook.fail_first = 10
    ch = WebhookChannel(webhook.url, policy=FAST)
    try:
        with pytest.raises(DeliveryError, match="503"):
            await ch.deliver(alert("1"))
    finally:
        await ch.close()
    assert webhook.posts == 4 and webhook.received == []


async def test_webhook_client_errors_are_not_retried(webhook: Hook) -> None:
    webhook.status_for["1"] = 400
    ch = WebhookChannel(webhook.url, policy=FAST)
    try:
        with pytest.raises(DeliveryError, match="400"):
            await ch.deliver(alert("1"))
    finally:
        await ch.close()
    assert webhook.posts == 1


async def test_webhook_unreachable_is_a_delivery_error() -> None:
    ch = WebhookChannel(f"http://127.0.0.1:{free_port()}/nobody", policy=FAST)
    try:
        with pytest.raises(DeliveryError, match="webhook"):
            await ch.deliver(alert("1"))
    finally:
        await ch.close()


async def test_webhook_slack_format(webhook: Hook) -> None:
    ch = WebhookChannel(webhook.url, slack=True, policy=FAST)
    try:
        await ch.deliver(alert("1"))
    finally:
        await ch.close()
    assert set(webhook.received[0]) == {"text", "blocks"}


def smtp(box: Mailbox) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=box.port, sender="aw@localhost",
                      recipients=["oncall@example.org"])


async def test_digest_mails_pending_alerts_together(tmp_path: Path, smtp_server: Mailbox) -> None:
    ch = EmailDigestChannel(smtp(smtp_server), tmp_path / "pending.jsonl")
    await ch.deliver(alert("1", session="s-1"))
    await ch.deliver(alert("2", "critical", session="s-2"))
    assert len(ch.pending()) == 2 and smtp_server.messages == []
    assert await ch.flush() == 2
    assert await ch.flush() == 0
    [msg] = smtp_server.messages
    assert msg["Subject"] == "[agentwatch] 2 alerts (critical) in 2 sessions"
    assert msg["To"] == "oncall@example.org"
    body = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Session s-1" in body and "Session s-2" in body and "mitigation: pause it" in body
    assert ch.pending() == []


async def test_pending_digest_survives_a_restart(tmp_path: Path, smtp_server: Mailbox) -> None:
    first = EmailDigestChannel(smtp(smtp_server), tmp_path / "pending.jsonl")
    await first.deliver(alert("1"))
    second = EmailDigestChannel(smtp(smtp_server), tmp_path / "pending.jsonl")
    assert await second.flush() == 1
    assert len(smtp_server.messages) == 1


async def test_digest_is_dead_lettered_after_repeated_smtp_failures(tmp_path: Path) -> None:
    given_up: list[tuple[list[Any], str]] = []
    cfg = SmtpConfig(host="127.0.0.1", port=free_port(), sender="a@b", recipients=["c@d"],
                     timeout_s=1.0)
    ch = EmailDigestChannel(cfg, tmp_path / "pending.jsonl", max_attempts=2,
                            on_give_up=lambda alerts, err: given_up.append((list(alerts), err)))
    await ch.deliver(alert("1"))
    assert await ch.flush() == 0
    assert given_up == [] and len(ch.pending()) == 1
    assert await ch.flush() == 0
    assert [a["alert_id"] for a in given_up[0][0]] == ["1"] and "SMTP" in given_up[0][1]
    assert ch.pending() == []
