"""Local receivers for the alerting tests: an aiohttp webhook that fails on demand, an aiosmtpd server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiohttp import web
from alert_helpers import Hook, Mailbox, free_port


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
