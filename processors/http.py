"""/health and /metrics of the worker on settings.worker_http, as a service of the Faust worker.

Our own aiohttp app (pipeline.observability) rather than Faust's web server: the same routes
and JSON as every other component, without Faust's default pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from mode import Service
from prometheus_client import CollectorRegistry

from pipeline.observability import HealthCheck, health_app, start_http
from processors.metrics import WorkerMetrics


class HttpEndpoint(Service):
    """Starts with the worker, stops with it (SIGTERM included)."""

    def __init__(
        self, health: HealthCheck, registry: CollectorRegistry, host: str, port: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._app = health_app(registry, health)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = await start_http(self._app, self._host, self._port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def health_check(
    app: Any, agents: Sequence[Any], metrics: WorkerMetrics, guarantee: str
) -> HealthCheck:
    """Healthy while the app runs and no agent has crashed; reports the assignment."""

    def check() -> dict[str, Any]:
        crashed = [a.name for a in agents if a.crashed] + (["app"] if app.crashed else [])
        assigned = _assigned(app)
        if assigned is not None:
            metrics.assigned_partitions.set(assigned)
        running = bool(app.started) and not app.should_stop
        return {
            "healthy": running and not crashed,
            "component": "worker",
            "app_id": app.conf.id,
            "processing_guarantee": guarantee,
            "assigned_partitions": assigned,
            "crashed": crashed,
        }

    return check


def _assigned(app: Any) -> int | None:
    # Never create the consumer from here: Faust must build it itself once the worker runs.
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return None
    try:
        return len(consumer.assignment())
    except Exception:  # not started yet (ConsumerNotStarted) or stopping
        return None
