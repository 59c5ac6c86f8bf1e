"""`agentwatch worker`: run the Faust app with its agents, /health and /metrics, until SIGTERM.

Started by `agentwatch up` (pipeline/stack/components.py names ``processors.app``) as
``python -m pipeline.cli worker``. Topics the worker reads and writes are created up front with
the confluent-kafka admin client (pipeline/topics.py), not by Faust through aiokafka, whose
topic creation is unreliable against Kafka 4.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("agentwatch.worker")

SHUTDOWN_GRACE_S = 30.0
"""Longest a SIGTERM'd worker may take to stop (a broker that is gone can stall Faust's commit
and flush for minutes); then it exits hard. Safe with transactions: nothing half-done commits."""


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--no-create-topics", action="store_true",
        help="do not create missing ingest/events/dlq topics before starting",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.gc_tuning import tune_gc
    from pipeline.observability import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, "agentwatch.worker")
    if not args.no_create_topics:
        _create_topics(settings)
    worker, app = build_worker(settings)
    tune_gc()  # a batch keeps thousands of decoded events alive at once
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except asyncio.CancelledError:
        # mode re-raises the worker's crash reason; Faust cancels agents first on shutdown and
        # an agent whose supervisor does not expect that records the cancellation as a crash.
        pass
    reason = worker.crash_reason or app.crash_reason
    if reason is not None and not isinstance(reason, asyncio.CancelledError):
        log.error("worker crashed", extra={"reason": repr(reason)})
        return 1
    return code


def _create_topics(settings: Any) -> None:
    from pipeline.topics import ensure_topics, topic_specs

    own = {settings.topics.ingest, settings.topics.events, settings.topics.dlq,
           settings.topics.replay}
    created = ensure_topics(
        settings.kafka, [s for s in topic_specs(settings.topics) if s.name in own]
    )
    if created:
        log.info("created topics", extra={"topics": created})
    from processors.tables import ensure_aggregate_topics

    created = ensure_aggregate_topics(settings)
    if created:
        log.info("created topics", extra={"topics": created})


def build_worker(settings: Any) -> tuple[Any, Any]:
    """The Faust worker (app + agents + HTTP endpoint) for ``settings``; not started."""
    from pipeline.serde import serde_from_settings
    from processors.app import create_app
    from processors.fetch_wait import cap_fetch_wait
    from processors.http import HttpEndpoint, health_check
    from processors.ingest_stage import build_loop
    from processors.loop_stage import LoopStage
    from processors.metrics import WorkerMetrics
    from processors.revoke_commit import commit_before_revocation
    from processors.stable_offsets import StableOffsets, admin_factory
    from processors.startup_flow import hold_flow_around_seeks
    from processors.topics import define_topics
    from processors.validate import build_processor

    conf = settings.worker
    serde = serde_from_settings(settings)
    processor = build_processor(settings)
    app = create_app(settings)
    stable = None
    # Not ``app.in_transaction``: Faust caches it, and before the worker starts it reads False.
    if conf.processing_guarantee == "exactly_once" and conf.stable_offsets_timeout_s > 0:
        stable = StableOffsets(app.conf.id, admin_factory(settings.kafka.client_config()),
                               timeout_s=conf.stable_offsets_timeout_s)
    hold_flow_around_seeks(app, stable)
    commit_before_revocation(app)
    cap_fetch_wait(app, conf.fetch_max_wait_ms)
    # Faust creates its data dir but not the parents.
    Path(app.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
    topics = define_topics(app, settings, serde)
    metrics = WorkerMetrics()
    stages = set(conf.stages)
    # The stages run as librdkafka loops beside the Faust agents (the replay agent, and the
    # aggregates agent with worker.aggregates_runtime = faust).
    loops: list[LoopStage] = []
    if "ingest" in stages:
        loops.append(LoopStage(
            "ingest", functools.partial(build_loop, settings, processor, metrics), app.crash))
    from processors.replay_agent import attach_replay_agent

    # The replay agent runs in every worker: it is light, and Faust needs one subscription.
    agents = [attach_replay_agent(app, settings, serde, metrics.registry)]
    if "aggregates" in stages and conf.aggregates_runtime == "librdkafka":
        from processors.aggregates_stage import build_aggregates_loop

        loops.append(LoopStage(
            "aggregates", functools.partial(build_aggregates_loop, settings, metrics.registry),
            app.crash))
    elif "aggregates" in stages:
        from processors.aggregates import attach_aggregates_agent

        agents.insert(0, attach_aggregates_agent(app, topics, settings, metrics.registry))
    http = HttpEndpoint(
        health_check(app, agents, loops, settings.worker.processing_guarantee,
                     settings.topics.events),
        metrics.registry,
        settings.worker_http.host,
        settings.worker_http.port,
    )
    services = [*loops, http]
    log.info("worker stages", extra={"stages": sorted(stages)})
    worker = _worker_class()(
        app, *services,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    return worker, app


def _worker_class() -> Any:
    import faust

    class Worker(faust.Worker):
        """Faust's worker with a deadline on shutdown."""

        async def on_stop(self) -> None:
            threading.Thread(target=_exit_after, args=(SHUTDOWN_GRACE_S,), daemon=True).start()
            await super().on_stop()

    return Worker


def _exit_after(seconds: float) -> None:
    time.sleep(seconds)
    log.error("worker did not stop within %.0f s of the stop request; exiting", seconds)
    logging.shutdown()
    os._exit(1)


