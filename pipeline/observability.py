"""What every long-running component shares to be observable: JSON logs, metrics, health, SIGTERM.

A component builds its own ``CollectorRegistry`` (no process-global metric state, so tests can
run several components in one process), serves ``/health`` and ``/metrics`` with
``health_app`` (or mounts ``add_health_routes`` on its own aiohttp app), and waits on
``shutdown_event`` to flush, commit and close on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HealthCheck = Callable[[], dict[str, Any]]
"""Returns a JSON-able dict; key ``healthy`` (bool) decides 200 vs 503."""

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={...}`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO", fmt: str = "json", component: str = "") -> None:
    """Structured logs on stderr; called once by each component's entry point."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if component:
        logging.getLogger(component).info("logging configured", extra={"component": component})


def add_health_routes(
    app: web.Application, registry: CollectorRegistry, health: HealthCheck
) -> None:
    async def health_handler(_: web.Request) -> web.Response:
        body = health()
        status = 200 if body.get("healthy", False) else 503
        return web.json_response(body, status=status)

    async def metrics_handler(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    app.router.add_get("/health", health_handler)
    app.router.add_get("/metrics", metrics_handler)


def health_app(registry: CollectorRegistry, health: HealthCheck) -> web.Application:
    app = web.Application()
    add_health_routes(app, registry, health)
    return app


async def start_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start an aiohttp app on host:port without blocking; stop with ``await runner.cleanup()``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def shutdown_event(loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Event:
    """An event set on SIGTERM or SIGINT, so the component can drain and exit cleanly."""
    event = asyncio.Event()
    loop = loop or asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event
