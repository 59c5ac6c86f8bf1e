"""`agentwatch sampler`: CPU, memory and network of the agents' processes into the ingest topic.

Runs on the agent's machine (``agentwatch up`` starts it beside the collector). Every
``sampler.interval_s`` it samples the agents' process trees (``producers.sampler.core``) and asks
the collector which sessions and Bash calls are live (``GET /api/active-sessions``); while a
call's processes run it samples those every ``sampler.command_interval_s``. Events go through the
durable spool (``producers.publisher``). Serves ``/health`` and ``/metrics`` on
``sampler.port``, including the sampler's own CPU and memory; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.errors import AgentwatchError, TransientError
from pipeline.settings import SamplerSettings, Settings
from producers.publisher import EventPublisher
from producers.sampler.core import Sampler, SamplerConfig
from producers.sampler.source import ProcessSource
from producers.sampler.view import fetch_view

log = logging.getLogger("producers.sampler")

TICK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
_REPORT_EVERY_S = 60.0


def config_from(cfg: SamplerSettings) -> SamplerConfig:
    return SamplerConfig(
        process_names=cfg.process_names, cmdline_patterns=cfg.cmdline_patterns,
        exclude_patterns=cfg.exclude_patterns, claude_dir=cfg.resolved_claude_dir(),
        network=cfg.network, include_loopback=cfg.include_loopback,
        bytes_every_s=cfg.network_bytes_every_s, max_track_s=cfg.command_max_track_s)


class SamplerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ticks = Counter("agentwatch_sampler_ticks", "Samples of the process trees",
                             ("kind",), registry=registry)
        self.tick_seconds = Histogram("agentwatch_sampler_tick_seconds",
                                      "Wall time of one tick (sampling and publishing)",
                                      ("kind",), registry=registry, buckets=TICK_BUCKETS)
        self.events = Counter("agentwatch_sampler_events", "Events produced", ("type",),
                              registry=registry)
        self.dropped = Counter("agentwatch_sampler_events_dropped",
                               "Events the spool refused (full or failing)", registry=registry)
        self.collector_errors = Counter("agentwatch_sampler_collector_errors",
                                        "Failed GET /api/active-sessions", registry=registry)
        self.agents = Gauge("agentwatch_sampler_agents", "Agent processes watched",
                            registry=registry)
        self.agents_resolved = Gauge("agentwatch_sampler_agents_resolved",
                                     "Agent processes matched to a session", registry=registry)
        self.calls = Gauge("agentwatch_sampler_calls_tracked",
                           "Bash calls whose processes are followed", registry=registry)
        self.calls_unseen = Gauge("agentwatch_sampler_calls_unseen",
                                  "Bash calls that ended before a process of theirs was seen",
                                  registry=registry)
        self.cpu = Gauge("agentwatch_sampler_cpu_percent",
                         "The sampler's own CPU use, % of one core (since the last interval)",
                         registry=registry)
        self.rss = Gauge("agentwatch_sampler_rss_bytes", "The sampler's own resident memory",
                         registry=registry)


@dataclass
class SelfMeter:
    """The sampler's own overhead: process CPU time over wall time, and RSS."""

    wall: float = field(default_factory=time.monotonic)
    cpu: float = field(default_factory=time.process_time)
    cpu_pct: float = 0.0
    rss_bytes: int = 0

    def update(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        if wall > self.wall:
            self.cpu_pct = 100.0 * (cpu - self.cpu) / (wall - self.wall)
        self.wall, self.cpu = wall, cpu
        try:
            with open("/proc/self/statm", "rb") as f:
                self.rss_bytes = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.rss_bytes = peak if peak > 1 << 32 else peak * 1024  # macOS: bytes, else KiB


class SamplerService:
    """The loop around the core: collector polls, ticks, publishing, metrics. Blocking work
    (reading /proc, the spool) runs in a worker thread, one tick at a time."""

    def __init__(self, settings: Settings, publisher: EventPublisher, *,
                 source: ProcessSource | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        from producers.sampler.source import PsutilSource

        self.settings = settings
        self.cfg = settings.sampler
        self.publisher = publisher
        self.sampler = Sampler(source or PsutilSource(network_budget=self.cfg.network_cpu_share),
                               config_from(self.cfg))
        self.registry = registry if registry is not None else publisher.registry
        self.metrics = SamplerMetrics(self.registry)
        self.meter = SelfMeter()
        self.collector_url = self.cfg.resolved_collector_url(settings.collector)
        self.last_tick = time.monotonic()
        self._last_report = time.monotonic()
        self._last_poll = float("-inf")
        self._snapshot: dict[str, Any] = {"agents": 0, "agents_resolved": 0, "calls_tracked": 0,
                                          "calls_unseen": 0, "events": {}}

    def poll(self, now: float) -> None:
        """Ask the collector for its view (blocking: runs in the tick's worker thread)."""
        since_us = int((now - self.cfg.sessions_window_s) * 1e6)
        try:
            view = fetch_view(self.collector_url, since_us=since_us,
                              timeout_s=self.cfg.collector_timeout_s)
        except TransientError:
            self.metrics.collector_errors.inc()
            self.sampler.view_unavailable()
            return
        self.sampler.set_view(view, time.time())

    def step(self, now: float, full: bool) -> int:
        """One iteration, in one worker thread: list processes, ask the collector when due (or
        when a new child of an agent waits for its call), measure and publish."""
        self.sampler.observe(now)
        since_poll = now - self._last_poll
        if since_poll >= self.cfg.interval_s or (
                self.sampler.wants_view() and since_poll >= self.cfg.command_interval_s):
            self._last_poll = now
            self.poll(now)
        return self.tick(now, full)

    def tick(self, now: float, full: bool) -> int:
        kind = "full" if full else "fast"
        started = time.perf_counter()
        produced = self.sampler.measure(now, full=full)
        if produced:
            try:
                self.publisher.publish_many(produced)
            except AgentwatchError as exc:
                self.metrics.dropped.inc(len(produced))
                log.warning("events not spooled", extra={"events": len(produced),
                                                         "error": type(exc).__name__})
            for event in produced:
                self.metrics.events.labels(event["event_type"]).inc()
        self.metrics.ticks.labels(kind).inc()
        self.metrics.tick_seconds.labels(kind).observe(time.perf_counter() - started)
        self.last_tick = time.monotonic()
        if full:
            self._gauges()
        return len(produced)

    def _gauges(self) -> None:
        stats = self.sampler.stats
        self.meter.update()
        self.metrics.cpu.set(self.meter.cpu_pct)
        self.metrics.rss.set(self.meter.rss_bytes)
        self.metrics.agents.set(stats.agents)
        self.metrics.agents_resolved.set(stats.agents_resolved)
        self.metrics.calls.set(len(self.sampler.calls.tracked))
        self.metrics.calls_unseen.set(self.sampler.calls.unseen)
        # /health runs on the event loop: it reads this snapshot, never the sampler's own state.
        self._snapshot = {
            "agents": stats.agents, "agents_resolved": stats.agents_resolved,
            "calls_tracked": len(self.sampler.calls.tracked),
            "calls_unseen": self.sampler.calls.unseen, "events": dict(stats.events),
            "self_cpu_pct": round(self.meter.cpu_pct, 3), "self_rss_bytes": self.meter.rss_bytes}
        if time.monotonic() - self._last_report >= _REPORT_EVERY_S:
            self._last_report = time.monotonic()
            log.info("sampler overhead", extra={"cpu_pct": round(self.meter.cpu_pct, 3),
                                                "rss_mib": round(self.meter.rss_bytes / 2**20, 1),
                                                "agents": stats.agents,
                                                "agents_resolved": stats.agents_resolved})

    async def run(self, stop: asyncio.Event) -> None:
        """Sample in a thread of its own until ``stop``: a tick is synchronous /proc reading,
        and handing each one to a pool thread cost more CPU than the tick itself (measured)."""
        done = threading.Event()
        worker = asyncio.create_task(asyncio.to_thread(self.run_blocking, done))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.set()
            stopper.cancel()
            await worker

    def run_blocking(self, stop: threading.Event) -> None:
        interval, fast = self.cfg.interval_s, self.cfg.command_interval_s
        next_full = time.time()
        while not stop.is_set():
            now = time.time()
            full = now >= next_full
            try:
                self.step(now, full)
            except Exception:
                log.exception("sampler tick failed")  # the next tick starts from a fresh look
            if full:
                next_full = max(next_full + interval, now)
            hurry = self.sampler.busy() or self.sampler.wants_view()
            wait = min(next_full, time.time() + fast) if hurry else next_full
            stop.wait(max(0.0, wait - time.time()))

    def health(self) -> dict[str, Any]:
        stalled = time.monotonic() - self.last_tick > 10 * self.cfg.interval_s + 5
        return {"healthy": self.publisher.healthy() and not stalled, **self._snapshot,
                "collector": self.collector_url,
                "spool_backlog_events": self.publisher.backlog()}


# -- the command ------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--interval", type=float,
                        help="seconds between samples (default: settings sampler.interval_s)")
    parser.add_argument("--port", type=int, help="health/metrics port (default: sampler.port)")


async def serve(settings: Settings, *, stop: asyncio.Event | None = None,
                source: ProcessSource | None = None) -> None:
    from pipeline.observability import health_app, shutdown_event, start_http

    stop = stop or shutdown_event()
    registry = CollectorRegistry()
    publisher = EventPublisher(settings, "sampler", registry=registry).start()
    service = SamplerService(settings, publisher, source=source, registry=registry)
    runner = await start_http(health_app(registry, service.health), settings.sampler.host,
                              settings.sampler.port)
    log.info("sampler running", extra={"interval_s": settings.sampler.interval_s,
                                       "collector": service.collector_url,
                                       "port": settings.sampler.port})
    try:
        await service.run(stop)
    finally:
        log.info("sampler stopping")
        await runner.cleanup()
        await asyncio.to_thread(publisher.close, 10.0)


def run(args: argparse.Namespace) -> int:
    from pipeline.observability import configure_logging
    from pipeline.settings import load_settings

    overrides: dict[str, Any] = {}
    if args.interval is not None:
        overrides["interval_s"] = args.interval
    if args.port is not None:
        overrides["port"] = args.port
    settings = load_settings()
    if overrides:
        sampler = SamplerSettings.model_validate({**settings.sampler.model_dump(), **overrides})
        settings = settings.model_copy(update={"sampler": sampler})
    configure_logging(settings.log_level, settings.log_format, "producers.sampler")
    asyncio.run(serve(settings))
    return 0
