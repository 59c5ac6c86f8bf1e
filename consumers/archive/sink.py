"""`agentwatch sink archive`: the long-running archive consumer of ``agent.telemetry.events``.

Wiring only: the shared batching loop (``consumers.base``) in a worker thread with the
``ArchiveSink`` as its sink, a timer that compacts idle sessions, ``/health`` and ``/metrics``
on ``archive_sink_http``, and a clean stop on SIGTERM (last flush, commit, close).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, cast

from pipeline.gc_tuning import tune_gc as shared_tune_gc

if TYPE_CHECKING:
    from consumers.archive.archiver import ArchiveSink
    from pipeline.settings import Settings

log = logging.getLogger("agentwatch.archive")


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--target", help="archive URL (default: settings' archive target)")


def tune_gc() -> None:
    """Fewer collector passes for a process that keeps a batch of ~20k decoded dicts alive.

    Those dicts are freed by reference counting; the cyclic collector's frequent passes over them
    cost about a quarter of the sink's CPU (bench/archive.py). Process-wide, so only called from
    the sink's own entry point (and the benchmark).
    """
    shared_tune_gc(middle=20)


def run(args: argparse.Namespace) -> int:
    from pipeline.observability import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    if args.target:
        settings = settings.model_copy(
            update={"archive": settings.archive.model_copy(update={"target": args.target})})
    configure_logging(settings.log_level, settings.log_format, "archive-sink")
    tune_gc()
    asyncio.run(serve(settings))
    return 0


async def _compact_idle_forever(archiver: ArchiveSink, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(archiver.compact_idle)
        except Exception:  # one bad round must not end the timer; compaction logs the cause
            log.exception("idle compaction round failed")


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``, for tests that run the sink in-process)."""
    from confluent_kafka import Consumer, Producer
    from prometheus_client import CollectorRegistry

    from consumers.archive.archiver import ArchiveMetrics, ArchiveSink
    from consumers.archive.targets import open_target
    from consumers.base import (
        BatchingConfig,
        BatchingConsumer,
        BatchingMetrics,
        KafkaConsumer,
        commit_reporter,
        consumer_config,
    )
    from consumers.dlq import KafkaDeadLetters
    from pipeline.observability import health_app, shutdown_event, start_http
    from pipeline.serde import serde_from_settings

    cfg = settings.archive
    registry = CollectorRegistry()
    target = await asyncio.to_thread(open_target, settings.archive_target, settings.s3, cfg)
    archiver = ArchiveSink(target, ArchiveMetrics(registry), level=cfg.compress_level,
                           idle_timeout_s=cfg.idle_timeout_s, concurrency=cfg.write_concurrency)
    serde = serde_from_settings(settings)
    dead_letters = KafkaDeadLetters(
        Producer({**settings.kafka.client_config(), "enable.idempotence": True}),
        serde, settings.topics.dlq)
    batching_metrics = BatchingMetrics(registry)

    def make_consumer() -> KafkaConsumer:
        # confluent-kafka's overloaded commit() does not match the base's Protocol for mypy.
        return cast("KafkaConsumer", Consumer(consumer_config(
            settings.kafka, cfg.consumer_group,
            **{"session.timeout.ms": cfg.session_timeout_ms,
               "on_commit": commit_reporter(batching_metrics, "archive")})))

    unassigned_s = cfg.unassigned_timeout_s or cfg.session_timeout_ms / 1000
    loop = BatchingConsumer(
        name="archive",
        consumer=make_consumer(),
        consumer_factory=make_consumer,
        topics=[settings.topics.events],
        deserialize=serde.decode_event,
        sink=archiver,
        dead_letters=dead_letters,
        metrics=batching_metrics,
        config=BatchingConfig(max_records=cfg.segment_max_events, max_age_s=cfg.segment_max_age_s,
                              stage="archive", unassigned_timeout_s=unassigned_s,
                              rejoin_timeout_s=2 * unassigned_s),
    )
    idle_task = asyncio.create_task(_compact_idle_forever(archiver, cfg.idle_check_interval_s))

    def health() -> dict[str, Any]:
        body = {**loop.health(), **archiver.health()}
        body["healthy"] = bool(body["healthy"]) and not idle_task.done()
        return body

    http = settings.archive_sink_http
    runner = await start_http(health_app(registry, health), http.host, http.port)
    stopping = stop if stop is not None else shutdown_event()
    thread_stop = threading.Event()
    consuming = asyncio.create_task(asyncio.to_thread(loop.run, thread_stop))
    log.info("archive sink started", extra={"target": target.describe(),
                                            "topic": settings.topics.events})
    waiter = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({waiter, consuming}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        thread_stop.set()
        waiter.cancel()
        idle_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await idle_task
        try:
            await consuming  # the loop's last flush and commit, then consumer and sink close
        finally:
            dead_letters.close()
            await runner.cleanup()
            log.info("archive sink stopped")
