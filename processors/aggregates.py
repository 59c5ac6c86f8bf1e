"""The aggregates agent: one pass over the events topic feeds both the widgets and the patterns.

One Faust agent rather than one per side: Faust decodes and streams a message once per agent,
and that per-message path costs more than folding an event into both states. Events are folded
synchronously and held unacked; the flush timer sends due widget updates and takes checkpoints
(processors/checkpoint.py): both sides' touched states to their changelogs, every output since
the last checkpoint confirmed, then the held events acked. Concurrency 1 (faust-streaming issue
606); the worker scales with partitions and more workers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry, Histogram

from pipeline.settings import Settings
from processors.checkpoint import Checkpointer, before_wait_empty
from processors.commit_guard import guard_commits
from processors.patterns.agent import build_pattern_shell
from processors.tables import owned_partitions
from processors.topics import WorkerTopics
from processors.widgets.agent import build_widget_shell

AGENT_NAME = "agentwatch.aggregates"
YIELD_EVERY = 128
"""Events folded between two yields to the loop, so the flush timer keeps its pace under load."""


def attach_aggregates_agent(app: Any, topics: WorkerTopics, settings: Settings,
                            registry: CollectorRegistry) -> Any:
    """Register both tables, the agent and its timers on ``app``; returns the agent."""
    conf = settings.widgets
    checkpoints = Checkpointer(conf.checkpoint_interval_ms / 1000.0, conf.checkpoint_max_events)
    lock = asyncio.Lock()
    widgets = build_widget_shell(app, settings, registry, checkpoints, lock)
    patterns = build_pattern_shell(app, settings, registry, checkpoints)
    seconds = Histogram(
        "agentwatch_aggregates_checkpoint_seconds",
        "Persist the touched states, confirm the outputs, ack the events.",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=registry)

    async def checkpoint() -> None:
        started = time.perf_counter()
        async with lock:
            held, outputs = checkpoints.take()
            owned = owned_partitions(app, settings.topics.events)
            widgets.processor.persist(owned)
            patterns.processor.persist(owned)
            writes = [*await widgets.store.write(), *await patterns.store.write()]
        await asyncio.gather(*writes, *outputs)
        for stream, event in held:
            await stream.ack(event)
        seconds.observe(time.perf_counter() - started)

    async def aggregates(stream: Any) -> None:
        guard_commits(app.consumer)
        before_wait_empty(app.consumer, checkpoint)
        manual = stream.noack()
        n = 0
        async for event in manual.events():
            widgets.fold(event)
            patterns.send_soon(patterns.fold(event))
            checkpoints.hold(manual, event)
            n += 1
            if checkpoints.held >= checkpoints.max_held:
                await widgets.send_due()
                await checkpoint()
            elif n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def tick() -> None:
        await widgets.send_due()
        if checkpoints.due():
            await checkpoint()

    app.timer(interval=conf.flush_tick_ms / 1000.0, name="agentwatch.aggregates.flush")(tick)
    return app.agent(topics.events, name=AGENT_NAME, concurrency=1,
                     supervisor_strategy=CrashingSupervisor)(aggregates)
