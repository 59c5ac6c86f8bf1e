"""The widgets agent: events -> per-session widget state (table) -> coalesced WidgetUpdates.

A thin Faust shell around ``WidgetProcessor``: batches of events are folded synchronously, then
the changed states go to the changelog and the due updates to the widgets topic; the batch is
acked (so its offsets may be committed) only once all of those are acknowledged by Kafka. A timer
sends updates that became due without a new event, which bounds the dashboard's lag by the
coalescing interval plus one tick. Widget outputs are at-least-once whatever the worker's
processing guarantee; the replay guard in the state makes reprocessing harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.model import WIDGET_UPDATE
from pipeline.serde import AvroSerde, serde_from_settings
from pipeline.settings import Settings
from processors.tables import WIDGET_TABLE, ChangelogStore, state_table
from processors.topics import WorkerTopics
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import WidgetProcessor

log = logging.getLogger(__name__)

AGENT_NAME = "agentwatch.widgets"
_YIELD_EVERY = 512


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
        self.batch_seconds = Histogram(
            "agentwatch_widget_batch_seconds", "Fold, persist and send one batch of events.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=registry)


@dataclass
class WidgetShell:
    app: Any
    serde: AvroSerde
    events_topic: str
    widgets_topic: str
    processor: WidgetProcessor
    store: ChangelogStore
    metrics: WidgetMetrics
    lock: asyncio.Lock

    def owned(self) -> set[int] | None:
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return None
        try:
            return {tp.partition for tp in consumer.assignment() if tp.topic == self.events_topic}
        except Exception:  # consumer not started or stopping: judge nothing
            return None

    async def flush(self) -> list[Any]:
        """Persist changed states and send due updates; returns the futures to await."""
        async with self.lock:
            outgoing = self.processor.flush(self.owned())
            futures = self.store.take_futures()
            for out in outgoing:
                # Straight to the plain producer: Faust's Topic.send would attach the message to
                # the current event, and under exactly_once re-partition it by key (see
                # processors/delivery.py); the partition is ours to choose (per session).
                futures.append(await self.app.producer.send(
                    self.widgets_topic, out.key, self.serde.encode(WIDGET_UPDATE, out.value),
                    out.partition, None, None))
                self.metrics.updates.labels(out.value["widget"]).inc()
            self.metrics.pending.set(self.processor.coalescer.pending())
            return futures


def attach_widget_agent(app: Any, topics: WorkerTopics, settings: Settings,
                        registry: CollectorRegistry) -> Any:
    """Register the widgets table, agent and flush timer on ``app``; returns the agent."""
    conf = settings.widgets
    table = state_table(app, WIDGET_TABLE, settings.topics.partitions,
                        "Widget state per session (reducer state, sequence, replay guard).")
    store = ChangelogStore(table)
    shell = WidgetShell(
        app=app, serde=serde_from_settings(settings), events_topic=settings.topics.events,
        widgets_topic=settings.topics.widgets,
        processor=WidgetProcessor(store, Coalescer(conf.coalesce_interval_ms / 1000.0),
                                  settings.topics.partitions),
        store=store, metrics=WidgetMetrics(registry), lock=asyncio.Lock())

    async def widgets(stream: Any) -> None:
        within = conf.batch_within_ms / 1000.0
        async for batch in stream.take_events(conf.batch_max, within=within):
            started = time.perf_counter()
            folded = 0
            for i, event in enumerate(batch):
                msg = event.message
                folded += shell.processor.fold(msg.partition, msg.offset, event.value)
                if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            shell.metrics.events.inc(folded)
            shell.metrics.skipped.inc(len(batch) - folded)
            # Acked (and so committable) when this returns: after Kafka has the state and updates.
            await asyncio.gather(*await shell.flush())
            shell.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def tick() -> None:
        await asyncio.gather(*await shell.flush())

    async def recovered() -> None:
        n = shell.processor.resume(store.items())
        if n:
            log.info("widget updates resumed after recovery", extra={"sessions": n})

    table.on_recover(recovered)
    app.timer(interval=conf.flush_tick_ms / 1000.0, name="agentwatch.widgets.flush")(tick)
    return app.agent(topics.events, name=AGENT_NAME, concurrency=1,
                     supervisor_strategy=CrashingSupervisor)(widgets)
