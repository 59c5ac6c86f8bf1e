"""`agentwatch gateway`: the aiohttp app (dashboard, WebSocket feed, REST API, /health, /metrics).

``create_app(settings)`` builds the application; every route is registered in ``_routes`` and
every resource (Kafka feed task, ClickHouse pool, audit flusher, replays) is opened and closed
side by side in a ``cleanup_ctx`` generator. ``run`` serves it (HTTPS/WSS when a certificate is
configured) until SIGTERM, then closes sockets, stops the feed and flushes the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from consumers.gateway import privacy_api, rest, ws
from consumers.gateway.audit import AuditLog
from consumers.gateway.auth import Authenticator, resolve_secret
from consumers.gateway.chpool import ClickHousePool
from consumers.gateway.context import GATEWAY, Gateway
from consumers.gateway.feed import WidgetFeed
from consumers.gateway.hub import Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.middleware import api_middleware
from consumers.gateway.ratelimit import RateLimiter
from consumers.gateway.state import WidgetStore
from consumers.gateway.static import add_static_routes
from pipeline.gc_tuning import tune_gc
from pipeline.observability import add_health_routes
from pipeline.serde import serde_from_settings
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def _routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/sessions", ws.overview_socket)
    r.add_get("/sessions/{session_id}", ws.session_socket)
    r.add_get("/api/openapi.json", rest.openapi)
    r.add_get("/api/me", rest.me)
    r.add_post("/api/ws-token", rest.ws_token)
    r.add_get("/api/sessions", rest.list_sessions)
    r.add_get("/api/sessions/{session_id}", rest.session_detail)
    r.add_get("/api/sessions/{session_id}/events", rest.session_events)
    r.add_get("/api/sessions/{session_id}/export", rest.export_session)
    r.add_post("/api/sessions/{session_id}/replays", rest.start_replay)
    r.add_get("/api/replays/{replay_id}", rest.replay_status)
    r.add_post("/api/replays/{replay_id}/pause", rest.pause_replay)
    r.add_post("/api/replays/{replay_id}/resume", rest.resume_replay)
    r.add_delete("/api/replays/{replay_id}", rest.stop_replay)
    r.add_get("/api/search", rest.search_events)
    r.add_get("/api/queries", rest.list_queries)
    r.add_get("/api/queries/{name}", rest.run_query)
    r.add_get("/api/audit", rest.audit_log)
    privacy_api.add_routes(r)
    add_static_routes(app)


def _health(gw: Gateway) -> dict[str, Any]:
    feed = gw.feed
    status = feed.status if feed is not None else None
    return {
        "healthy": True,
        "component": "gateway",
        "caught_up": status.caught_up if status else None,
        "kafka_error": status.last_error if status else None,
        "records": status.records if status else 0,
        "sessions": len(gw.store.sessions),
        "clients": gw.hub.count(),
        "audit_pending": gw.audit.pending,
    }


def create_app(settings: Settings, *, registry: CollectorRegistry | None = None,
               kafka: bool = True, clickhouse: bool = True) -> web.Application:
    """The gateway app; ``kafka``/``clickhouse`` False leave those resources out (unit tests)."""
    conf = settings.gateway
    registry = registry or CollectorRegistry()
    metrics = GatewayMetrics(registry)
    needs_secret = any(a.startswith("HS") for a in conf.jwt_algorithms)
    secret = resolve_secret(conf, settings.stack.dir) if needs_secret else None
    store = WidgetStore(conf.pattern_alerts_per_session)
    gw = Gateway(
        settings=settings, auth=Authenticator(conf, secret), store=store, hub=Hub(store, metrics),
        metrics=metrics, limiter=RateLimiter(conf.rate_limit_rps, conf.rate_limit_burst),
        audit=AuditLog(None, metrics, flush_s=conf.audit_flush_s, max_rows=conf.audit_buffer_max))
    app = web.Application(middlewares=[api_middleware], client_max_size=1024 * 1024)
    app[GATEWAY] = gw
    _routes(app)
    add_health_routes(app, registry, lambda: _health(gw))
    if clickhouse:
        app.cleanup_ctx.append(_clickhouse_ctx)
    app.cleanup_ctx.append(_replays_ctx)
    if kafka:
        app.cleanup_ctx.append(_feed_ctx)
    app.on_shutdown.append(_close_sockets)
    return app


async def _clickhouse_ctx(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    ch = gw.settings.clickhouse
    gw.pool = ClickHousePool(ch, ch.database, gw.settings.gateway.clickhouse_pool)
    gw.audit.pool = gw.pool
    task = asyncio.get_running_loop().create_task(gw.audit.run(), name="gateway.audit")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await gw.audit.close()
    gw.pool.close()


async def _replays_ctx(app: web.Application) -> AsyncIterator[None]:
    from consumers.gateway.replays import ReplayManager

    gw = app[GATEWAY]
    settings = gw.settings
    channels: list[Any] = []

    async def kafka_emit(event: dict[str, Any]) -> None:
        # Made on first use: most gateways never replay, and the producer needs a broker.
        if not channels:
            from consumers.archive.channel import KafkaReplayChannel

            channels.append(KafkaReplayChannel(settings.kafka, settings.topics.replay,
                                               serde_from_settings(settings)))
        await channels[0].emit(event)

    def load(session_id: str) -> tuple[list[dict[str, Any]], str]:
        from consumers.archive.clickhouse_source import ClickHouseEventSource
        from consumers.archive.recordings import SessionNotFoundError, load_session
        from consumers.archive.targets import open_target

        target = open_target(settings.archive_target, settings.s3, settings.archive)
        try:
            loaded = load_session(target, session_id, [ClickHouseEventSource(settings.clickhouse)])
        except SessionNotFoundError:
            return [], ""
        return loaded.events, loaded.source

    gw.replays = ReplayManager(
        load, gw.hub.broadcast_session, max_running=settings.gateway.max_replays,
        kafka_emit=kafka_emit if settings.gateway.replay_to_kafka else None,
        on_count=gw.metrics.replays.set, send_to_user=gw.hub.send_to_user)
    yield
    await gw.replays.close()
    for channel in channels:
        with contextlib.suppress(Exception):
            await channel.close(timeout_s=5.0)


async def _feed_ctx(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    s = gw.settings
    gw.feed = WidgetFeed(s.kafka, s.topics.widgets, s.topics.patterns, store=gw.store,
                         serde=serde_from_settings(s), metrics=gw.metrics,
                         patterns_lookback_s=s.gateway.patterns_lookback_s,
                         partition_refresh_s=s.gateway.partition_refresh_s)
    if gw.replays is not None:
        gw.feed.on_replay_update = gw.replays.on_widget_update
    task = asyncio.get_running_loop().create_task(gw.feed.run(), name="gateway.feed")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_sockets(app: web.Application) -> None:
    await app[GATEWAY].hub.close_all()


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    conf = settings.gateway
    if conf.tls_cert is None and conf.tls_key is None:
        return None
    if conf.tls_cert is None or conf.tls_key is None:
        from pipeline.errors import ConfigError

        raise ConfigError("TLS needs both AGENTWATCH_GATEWAY__TLS_CERT and AGENTWATCH_GATEWAY__TLS_KEY")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(conf.tls_cert, conf.tls_key)
    return ctx


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    conf = settings.gateway
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    tls = ssl_context(settings)
    await web.TCPSite(runner, conf.host, conf.port, ssl_context=tls, backlog=4096).start()
    log.info("gateway listening", extra={
        "url": f"{'https' if tls else 'http'}://{conf.host}:{conf.port}/"})
    await stop.wait()
    log.info("gateway stopping")
    await runner.cleanup()


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--port", type=int, help="listen port (default: settings gateway.port)")


def run(args: argparse.Namespace) -> int:
    from pipeline.observability import configure_logging, shutdown_event
    from pipeline.settings import load_settings

    settings = load_settings()
    if args.port is not None:
        settings = settings.model_copy(
            update={"gateway": settings.gateway.model_copy(update={"port": args.port})})
    configure_logging(settings.log_level, settings.log_format, "gateway")
    # Every GC pass stops the fan-out: with thousands of open sockets a full pass took
    # 0.2-2.5 s here (bench/gateway.py, measured with gc.callbacks).
    tune_gc()

    async def main() -> None:
        await serve(settings, shutdown_event())

    asyncio.run(main())
    return 0
