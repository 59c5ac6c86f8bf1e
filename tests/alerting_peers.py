"""Local peers of the alerting tests, shared by unit and integration tests: an aiohttp webhook
that fails on demand, an aiosmtpd server, and alert records. Test modules import the fixtures
from here through a conftest.py re-export (``from alerting_peers import webhook, smtp_server``)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiohttp import web

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


@pytest.fixture
async def webhook() -> AsyncIterator[Hook]:
    port = free_port()
    hook = Hook(url=f"http://127.0.0.1:{port}/hook")

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        hook.posts += 1
        for needle, status in hook.status_for.items():
            if needle in (body.get("alert_id"), ) or needle in str(body.get("text", "")):
                return web.Response(status=status, text="refused")
        if hook.fail_first > 0:
            hook.fail_first -= 1
            return web.Response(status=503, text="busy")
        hook.received.append(body)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield hook
    finally:
        await runner.cleanup()


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(port=free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            box.messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
