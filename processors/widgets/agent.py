"""The widgets agent: events -> per-session widget state (table) -> coalesced WidgetUpdates.

A thin Faust shell around ``WidgetProcessor``. Events are folded one by one (synchronously) and
held unacked; a timer sends the updates that are due (which bounds the dashboard's lag by the
coalescing interval plus one tick, even when no further event arrives) and takes checkpoints
(processors/checkpoint.py): states to the changelog, then acks. Widget outputs are at-least-once
whatever the worker's processing guarantee; the replay guard in the state makes reprocessing
harmless and the sequence numbers make a client notice anything it missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.model import WIDGET_UPDATE
from pipeline.serde import AvroSerde, serde_from_settings
from pipeline.settings import Settings
from processors.batch_send import send_records
from processors.checkpoint import Checkpointer, before_wait_empty
from processors.tables import WIDGET_TABLE, ChangelogStore, owned_partitions, state_table
from processors.topics import WorkerTopics
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import WidgetProcessor

log = logging.getLogger(__name__)

AGENT_NAME = "agentwatch.widgets"
YIELD_EVERY = 128
"""Events folded between two yields to the loop, so the flush timer keeps its pace under load."""


class WidgetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("agentwatch_widget_events", "Events folded into widget state.",
                              registry=registry)
        self.skipped = Counter("agentwatch_widget_replays_skipped",
                               "Events already folded in (replays, duplicates).", registry=registry)
        self.updates = Counter("agentwatch_widget_updates", "WidgetUpdates sent.", ["widget"],
                               registry=registry)
        self.pending = Gauge("agentwatch_widget_pending_updates",
                             "Widget updates waiting for their coalescing interval.",
                             registry=registry)
        self.checkpoint_seconds = Histogram(
            "agentwatch_widget_checkpoint_seconds",
            "Persist the touched states, confirm outputs, ack the events.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=registry)


@dataclass
class WidgetShell:
    app: Any
    serde: AvroSerde
    events_topic: str
    widgets_topic: str
    processor: WidgetProcessor
    store: ChangelogStore
    checkpoints: Checkpointer
    metrics: WidgetMetrics
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def fold(self, stream: Any, event: Any) -> None:
        msg = event.message
        if self.processor.fold(msg.partition, msg.offset, event.value):
            self.metrics.events.inc()
        else:
            self.metrics.skipped.inc()
        self.checkpoints.hold(stream, event)

    async def send_due(self) -> None:
        # Straight to the plain producer, as record batches: Faust's Topic.send would attach the
        # message to the current event, and under exactly_once re-partition it by key
        # (processors/delivery.py); the partition is ours to choose, per session. The lock keeps
        # a session's updates in sequence order.
        async with self.lock:
            due = self.processor.flush(owned_partitions(self.app, self.events_topic))
            records = [(out.partition, out.key, self.serde.encode(WIDGET_UPDATE, out.value))
                       for out in due]
            for future in await send_records(self.app, self.widgets_topic, records):
                self.checkpoints.output(future)
            for out in due:
                self.metrics.updates.labels(out.value["widget"]).inc()
            self.metrics.pending.set(self.processor.coalescer.pending())

    async def checkpoint(self) -> None:
        started = time.perf_counter()
        async with self.lock:
            held, outputs = self.checkpoints.take()
            self.processor.persist(owned_partitions(self.app, self.events_topic))
            writes = await self.store.write()
        await asyncio.gather(*writes, *outputs)
        for stream, event in held:
            await stream.ack(event)
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)


def attach_widget_agent(app: Any, topics: WorkerTopics, settings: Settings,
                        registry: CollectorRegistry) -> Any:
    """Register the widgets table, agent and flush timer on ``app``; returns the agent."""
    conf = settings.widgets
    table = state_table(app, WIDGET_TABLE, settings.topics.partitions,
                        "Widget state per session (reducer state, sequence, replay guard).")
    store = ChangelogStore(table, app)
    shell = WidgetShell(
        app=app, serde=serde_from_settings(settings), events_topic=settings.topics.events,
        widgets_topic=settings.topics.widgets,
        processor=WidgetProcessor(store, Coalescer(conf.coalesce_interval_ms / 1000.0),
                                  settings.topics.partitions),
        store=store,
        checkpoints=Checkpointer(conf.checkpoint_interval_ms / 1000.0, conf.checkpoint_max_events),
        metrics=WidgetMetrics(registry))

    async def widgets(stream: Any) -> None:
        before_wait_empty(app.consumer, shell.checkpoint)
        manual = stream.noack()
        n = 0
        async for event in manual.events():
            shell.fold(manual, event)
            n += 1
            if shell.checkpoints.held >= shell.checkpoints.max_held:
                await shell.send_due()
                await shell.checkpoint()
            elif n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def tick() -> None:
        await shell.send_due()
        if shell.checkpoints.due():
            await shell.checkpoint()

    async def recovered() -> None:
        n = shell.processor.resume(store.items())
        if n:
            log.info("widget updates resumed after recovery", extra={"sessions": n})

    table.on_recover(recovered)
    app.timer(interval=conf.flush_tick_ms / 1000.0, name="agentwatch.widgets.flush")(tick)
    return app.agent(topics.events, name=AGENT_NAME, concurrency=1,
                     supervisor_strategy=CrashingSupervisor)(widgets)
