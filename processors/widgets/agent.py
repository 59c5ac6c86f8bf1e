"""Widget side of the aggregates agent: events -> widget state (table) -> coalesced WidgetUpdates.

``WidgetShell`` wires ``WidgetProcessor`` to its changelogged table and to the widgets topic;
``processors/aggregates.py`` drives it (with the pattern side) from one Faust agent and the
timers. Updates go out when due (the flush timer bounds the dashboard's lag by the coalescing
interval plus one tick, even when no further event arrives); states reach the changelog at
checkpoints (processors/checkpoint.py). Widget outputs are at-least-once whatever the worker's
processing guarantee; the replay guard in the state makes reprocessing harmless and the sequence
numbers make a client notice anything it missed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.model import WIDGET_UPDATE
from pipeline.serde import AvroSerde, serde_from_settings
from pipeline.settings import Settings
from processors.batch_send import send_records
from processors.checkpoint import Checkpointer
from processors.tables import WIDGET_TABLE, ChangelogStore, owned_partitions, state_table
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import WidgetProcessor

log = logging.getLogger(__name__)


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
    lock: asyncio.Lock
    """Shared with the checkpoint: a state snapshot never lands between taking a sequence
    number and registering the update's delivery future."""

    def fold(self, event: Any) -> None:
        msg = event.message
        if self.processor.fold(msg.partition, msg.offset, event.value):
            self.metrics.events.inc()
        else:
            self.metrics.skipped.inc()

    async def send_due(self) -> None:
        # Straight to the plain producer, as record batches: Faust's Topic.send would attach the
        # message to the current event, and under exactly_once re-partition it by key
        # (processors/batch_send.py); the partition is ours to choose, per session. The lock keeps
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


def build_widget_shell(app: Any, settings: Settings, registry: CollectorRegistry,
                       checkpoints: Checkpointer, lock: asyncio.Lock) -> WidgetShell:
    """The widgets table (with its recovery callback) and the shell around it."""
    conf = settings.widgets
    table = state_table(app, WIDGET_TABLE, settings.topics.partitions,
                        "Widget state per session (reducer state, sequence, replay guard).")
    store = ChangelogStore(table, app)
    shell = WidgetShell(
        app=app, serde=serde_from_settings(settings), events_topic=settings.topics.events,
        widgets_topic=settings.topics.widgets,
        processor=WidgetProcessor(store, Coalescer(conf.coalesce_interval_ms / 1000.0),
                                  settings.topics.partitions),
        store=store, checkpoints=checkpoints, metrics=WidgetMetrics(registry), lock=lock)

    async def recovered() -> None:
        n = shell.processor.resume(store.items())
        if n:
            log.info("widget updates resumed after recovery", extra={"sessions": n})

    table.on_recover(recovered)
    return shell
