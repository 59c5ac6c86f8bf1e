"""`agentwatch collector`: Claude Code hooks and OTLP/HTTP in, Avro TelemetryEvents to Kafka.

Routes: ``POST /hooks`` (Claude Code ``http`` hooks, and ``agentwatch hook`` relaying command
hooks), ``POST /v1/logs``, ``/v1/metrics``, ``/v1/traces`` (OTLP/HTTP, protobuf or JSON, gzip),
``GET /health``, ``GET /metrics`` and ``GET /api/active-sessions`` (for the host sampler, see
``producers.collector.active``). A request is answered as soon as its events are in the
durable spool (see ``producers.publisher``): the agent never waits for Kafka, and a 2xx means
nothing is lost even if the collector is killed right after. Bodies that are not hooks or OTLP
get a 400 with the reason; a full spool gets a 503 with ``Retry-After``.

Logs never carry payload contents (tool inputs, outputs and prompts may hold secrets).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CollectorRegistry

from pipeline.privacy import USER_HEADER, ConsentCache, Telemetry, default_user_id
from pipeline.settings import Settings
from producers.collector import active, otlp
from producers.collector.consent import ClickHouseConsentLoader, ConsentGate, refresh_loop
from producers.collector.hooks import HookContext, HookState
from producers.collector.service import CollectorMetrics, HookHeaders, Intake, RequestRejectedError
from producers.collector.workers import OtlpWorkers
from producers.publisher import EventPublisher

log = logging.getLogger("producers.collector")

INTAKE = web.AppKey("intake", Intake)
SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", EventPublisher)
WORKERS = web.AppKey("otlp_workers", OtlpWorkers)
_PROTOBUF = "application/x-protobuf"
_EXPIRY_INTERVAL_S = 30.0
_INBOX_ROUND = 500


def _now_us() -> int:
    return time.time_ns() // 1000


def _rejection(endpoint: str, exc: RequestRejectedError, metrics: CollectorMetrics) -> web.Response:
    metrics.rejected.labels(endpoint, exc.reason).inc()
    log.warning("request rejected", extra={"endpoint": endpoint, "status": exc.status,
                                           "reason": exc.reason, "detail": exc.detail})
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
    return web.json_response({"error": exc.reason, "detail": exc.detail}, status=exc.status,
                             headers=headers)


async def _read(request: web.Request, endpoint: str, intake: Intake) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        intake.metrics.rejected.labels(endpoint, "too_large").inc()
        log.warning("request rejected", extra={"endpoint": endpoint, "status": 413,
                                               "reason": "too_large"})
        raise
    except RequestPayloadError as exc:
        # A body that does not decode with its Content-Encoding is the client's fault: 400 with
        # a reason, never a 500.
        rejected = RequestRejectedError(
            400, "bad_content_encoding", f"body does not match Content-Encoding: {exc}")
        _rejection(endpoint, rejected, intake.metrics)
        raise web.HTTPBadRequest(
            text=json.dumps({"error": rejected.reason, "detail": rejected.detail}),
            content_type="application/json") from exc


async def hooks_handler(request: web.Request) -> web.Response:
    intake = request.app[INTAKE]
    started = time.perf_counter()
    body = await _read(request, "/hooks", intake)
    now = _now_us()
    headers = HookHeaders.parse(request.headers, now)
    ctx = HookContext(received_us=headers.received_us or now, delivery_id=headers.delivery_id,
                      excerpt_chars=intake.excerpt_chars)
    try:
        intake.accept_hook(body, ctx, request.headers.get(USER_HEADER))
        if intake.publisher.fsync:
            await asyncio.to_thread(intake.publisher.sync)
    except RequestRejectedError as exc:
        return _rejection("/hooks", exc, intake.metrics)
    finally:
        intake.metrics.requests.labels("/hooks").observe(time.perf_counter() - started)
    # An empty 2xx is "success, no decision" for Claude Code's http hooks.
    return web.Response(status=200)


def otlp_handler(signal: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    endpoint = f"/v1/{signal}"

    async def handler(request: web.Request) -> web.Response:
        intake = request.app[INTAKE]
        started = time.perf_counter()
        content_type = request.content_type
        try:
            if content_type not in (_PROTOBUF, "application/json"):
                raise RequestRejectedError(
                    415, "unsupported_media_type",
                    f"OTLP/HTTP takes {_PROTOBUF} or application/json, not {content_type}")
            body = await _read(request, endpoint, intake)
            workers = request.app[WORKERS]
            header_user = request.headers.get(USER_HEADER)
            gate = intake.gate
            user = gate.user_for(header_user) if gate is not None else None
            mode = gate.mode(user) if gate is not None else Telemetry.ENABLED
            if gate is not None and mode is Telemetry.DISABLED:
                # Opted out: not even decoded. The exporter gets its usual success answer so it
                # does not retry (or queue) what we will never keep.
                gate.dropped_requests.labels(endpoint).inc()
            elif not workers.enabled:
                await asyncio.to_thread(intake.accept_otlp, signal, body, content_type, _now_us(),
                                        header_user)
            else:
                intake.accept_mapped(await workers.map(signal, body, content_type, _now_us(),
                                                       user=user, telemetry=mode.value))
            if intake.publisher.fsync:
                await asyncio.to_thread(intake.publisher.sync)
        except RequestRejectedError as exc:
            return _rejection(endpoint, exc, intake.metrics)
        finally:
            intake.metrics.requests.labels(endpoint).observe(time.perf_counter() - started)
        payload, response_type = otlp.encode_response(signal, otlp.is_json(content_type))
        return web.Response(body=payload, content_type=response_type)

    return handler


def _health(intake: Intake) -> Callable[[], dict[str, Any]]:
    def health() -> dict[str, Any]:
        publisher = intake.publisher
        return {
            "healthy": publisher.healthy(),
            "spool_backlog_events": publisher.backlog(),
            "spool_backlog_bytes": publisher.spool.backlog_bytes(),
            "in_flight": publisher.forwarder.in_flight(),
            "pending_tool_calls": len(intake.state.pending),
        }

    return health


async def _periodic(interval_s: float, work: Callable[[], Any], name: str) -> None:
    # On the loop, not in a thread: hook mapping shares HookState with the request handlers.
    while True:
        await asyncio.sleep(interval_s)
        try:
            work()
        except RequestRejectedError as exc:
            log.warning("%s round deferred", name, extra={"reason": exc.reason})
        except Exception:
            log.exception("%s round failed", name)


def create_app(
    settings: Settings,
    *,
    publisher: EventPublisher | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The collector's aiohttp app; the publisher is started and closed with the app."""
    from pipeline.observability import add_health_routes

    registry = registry if registry is not None else (
        publisher.registry if publisher is not None else CollectorRegistry())
    publisher = publisher or EventPublisher(settings, "collector", registry=registry)
    cfg = settings.collector
    metrics = CollectorMetrics(registry)
    state = HookState(max_pending=cfg.pending_tool_calls,
                      pending_ttl_us=int(cfg.pending_ttl_s * 1_000_000))
    pcfg = settings.privacy
    gate = ConsentGate(ConsentCache(fail_open=pcfg.fail_open, max_stale_s=pcfg.max_stale_s),
                       pcfg.user_id or default_user_id(), registry)
    intake = Intake(publisher, metrics, excerpt_chars=cfg.excerpt_chars, state=state, gate=gate)
    inbox_dir: Path = cfg.resolved_inbox_dir(settings.stack.dir)

    app = web.Application(client_max_size=cfg.max_body_bytes)
    app[INTAKE] = intake
    app[SETTINGS] = settings
    app[PUBLISHER] = publisher
    app[WORKERS] = workers = OtlpWorkers(cfg.otlp_workers)
    app.router.add_post("/hooks", hooks_handler)
    for signal in otlp.SIGNALS:
        app.router.add_post(f"/v1/{signal}", otlp_handler(signal))
    app.router.add_get("/api/active-sessions", active.handler(state, _now_us))
    add_health_routes(app, registry, _health(intake))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        publisher.start()
        await workers.start()
        load = ClickHouseConsentLoader(settings) if pcfg.consent_enabled else None
        if load is not None:
            # Known opt-outs apply from the first hook on, the inbox's included.
            try:
                gate.refreshed(await asyncio.wait_for(asyncio.to_thread(load), 3.0))
            except Exception as exc:
                gate.refresh_failures.inc()
                log.warning("consent table unreadable at start", extra={"error": str(exc)})
        # Hooks spooled while the collector was down go first, before any new one is accepted.
        drained = total = intake.drain_inbox(inbox_dir, _INBOX_ROUND)
        while drained:
            await asyncio.sleep(0)
            drained = intake.drain_inbox(inbox_dir, _INBOX_ROUND)
            total += drained
        if total:
            log.info("drained the command-hook inbox", extra={"files": total})
        tasks = [
            asyncio.create_task(_periodic(cfg.inbox_poll_s,
                                          lambda: intake.drain_inbox(inbox_dir, _INBOX_ROUND),
                                          "inbox")),
            asyncio.create_task(_periodic(_EXPIRY_INTERVAL_S, intake.expire_pending, "expiry")),
        ]
        if load is not None:
            tasks.append(asyncio.create_task(refresh_loop(gate, load, pcfg.refresh_s)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(workers.close)
            if load is not None:
                await asyncio.to_thread(load.close)
            await asyncio.to_thread(publisher.close, 10.0)

    app.cleanup_ctx.append(lifecycle)
    return app


# -- the command ------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--host", help="listen address (default: settings collector.host)")
    parser.add_argument("--port", type=int, help="listen port (default: settings collector.port)")


async def _serve(settings: Settings, host: str, port: int) -> None:
    from pipeline.observability import shutdown_event, start_http

    stop = shutdown_event()
    runner = await start_http(create_app(settings), host, port)
    log.info("collector listening", extra={"host": host, "port": port,
                                           "topic": settings.topics.ingest})
    try:
        await stop.wait()
    finally:
        log.info("collector stopping")
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    from pipeline.observability import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, "producers.collector")
    host = args.host or settings.collector.host
    port = args.port if args.port is not None else settings.collector.port
    asyncio.run(_serve(settings, host, port))
    return 0
