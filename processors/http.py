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
from processors.kafka_calls import LoopSnapshot
from processors.loop_stage import LoopStage


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
    app: Any, agents: Sequence[Any], loops: Sequence[LoopStage], guarantee: str,
    events_topic: str,
) -> HealthCheck:
    """Healthy while the app and the worker's stage loops run and no agent or loop has failed;
    reports the assignment. ``assigned_partitions`` counts the input partitions of the worker's
    first stage: ingest partitions, or, in a worker that runs only the aggregates, events
    partitions (None until they are known)."""

    def check() -> dict[str, Any]:
        crashed = [a.name for a in agents if a.crashed] + (["app"] if app.crashed else [])
        snaps = {loop.stage: loop.snapshot() for loop in loops}
        failures = {name: s.failure for name, s in snaps.items() if s.failure is not None}
        crashed += list(failures)
        app_assignment = _assignment(app)
        assignment = dict(app_assignment or {})
        for snap in snaps.values():
            for topic, _partition in snap.assigned:
                assignment[topic] = assignment.get(topic, 0) + 1
        running = (bool(app.started) and not app.should_stop
                   and all(snap.running for snap in snaps.values()))
        stalled = sorted(name for name, snap in snaps.items() if snap.stalled)
        return {
            "healthy": running and not crashed and not stalled,
            "component": "worker",
            "app_id": app.conf.id,
            "processing_guarantee": guarantee,
            "assigned_partitions": _input_partitions(snaps, app_assignment, events_topic),
            "assignment": assignment,
            "crashed": crashed,
            "stage_failures": failures,
            "blocked_s": {name: round(snap.blocked_s, 1) for name, snap in snaps.items()},
            "reason": f"loop_stalled: {', '.join(stalled)}" if stalled else None,
        }

    return check


def _input_partitions(snaps: dict[str, LoopSnapshot], app_assignment: dict[str, int] | None,
                      events_topic: str) -> int | None:
    first = snaps.get("ingest") or snaps.get("aggregates")
    if first is not None:
        return len(first.assigned) if first.running else None
    if app_assignment is None:
        return None
    return app_assignment.get(events_topic, 0)
def _assignment(app: Any) -> dict[str, int] | None:
    """Partitions per topic assigned to this worker; ``None`` before the consumer runs."""
    # Never create the consumer from here: Faust must build it itself once the worker runs.
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return None
    try:
        tps = consumer.assignment()
    except Exception:  # not started yet (ConsumerNotStarted) or stopping
        return None
    out: dict[str, int] = {}
    for tp in tps:
        out[tp.topic] = out.get(tp.topic, 0) + 1
    return out
