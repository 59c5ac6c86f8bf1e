"""The replay agent: topics.replay -> replay views (processors/replay_views.py) -> widgets topic.

A thin Faust shell, apart from the aggregates agent: its own topic, no table, no changelog, no
checkpoint. Records are acked as soon as they are folded (a view is ephemeral: after a crash the
replay is simply started again), and the pattern detectors never see a replayed event, so a
replay raises no alert. A timer sends the views' due updates (same coalescing as live widgets)
and tombstones the widgets of views that were dropped.

Records older than the idle timeout when they arrive are skipped: a worker that starts on a
replay topic holding a day of old replays (a new consumer group reads from the earliest offset)
must not rebuild and republish them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.errors import DecodeError
from pipeline.model import WIDGET_UPDATE
from pipeline.serde import AvroSerde
from pipeline.settings import Settings
from processors.batch_send import send_records
from processors.replay_views import ReplayViews

log = logging.getLogger(__name__)

AGENT_NAME = "agentwatch.replays"
YIELD_EVERY = 128


class ReplayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "agentwatch_replay_records", "Replay-topic records, by what became of them.",
            ["outcome"], registry=registry)
        self.updates = Counter("agentwatch_replay_widget_updates",
                               "WidgetUpdates of replay views sent.", registry=registry)
        self.dropped = Counter("agentwatch_replay_views_dropped",
                               "Replay views dropped (idle or evicted).", registry=registry)
        self.views = Gauge("agentwatch_replay_views", "Replay views held in memory.",
                           registry=registry)
        self.send_failures = Counter("agentwatch_replay_send_failures",
                                     "Replay view updates the producer failed to deliver.",
                                     registry=registry)


@dataclass
class ReplayShell:
    app: Any
    serde: AvroSerde
    widgets_topic: str
    views: ReplayViews
    metrics: ReplayMetrics
    max_age_s: float
    reported_dropped: int = 0

    def fold(self, event: Any) -> None:
        msg = event.message
        age = time.time() - msg.timestamp if msg.timestamp else 0.0
        if age > self.max_age_s:
            self.metrics.records.labels("stale").inc()
            return
        try:
            value = event.value
            record = self.serde.decode_event(value if isinstance(value, bytes) else b"")
        except DecodeError as exc:
            # Only our replay channel writes this topic; a bad record is counted, not fatal.
            self.metrics.records.labels("undecodable").inc()
            log.warning("undecodable replay record skipped", extra={
                "partition": msg.partition, "offset": msg.offset, "error": str(exc)})
            return
        folded = self.views.fold(msg.partition, msg.offset, record)
        self.metrics.records.labels(folded.outcome).inc()
        self.metrics.views.set(len(self.views))

    async def send_due(self) -> None:
        due = self.views.flush()
        records = [(out.partition, out.key, self.serde.encode(WIDGET_UPDATE, out.value))
                   for out in due]
        futures = await send_records(self.app, self.widgets_topic, records)
        gone = self.views.expire()
        if gone:
            producer = self.app.producer._ensure_producer()
            for tomb in gone:
                futures.append(await producer.send(self.widgets_topic, None, key=tomb.key,
                                                   partition=tomb.partition))
        if self.views.dropped != self.reported_dropped:
            self.metrics.dropped.inc(self.views.dropped - self.reported_dropped)
            self.reported_dropped = self.views.dropped
            self.metrics.views.set(len(self.views))
        if not futures:
            return
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # A replay view is ephemeral and the next update carries the whole widget again:
            # count and log rather than take the live worker down.
            self.metrics.send_failures.inc(len(failed))
            log.warning("replay view updates not delivered",
                        extra={"failed": len(failed), "error": repr(failed[0])})
        self.metrics.updates.inc(len(due))


def replay_topic(app: Any, settings: Settings) -> Any:
    """The replay topic as raw bytes: records are decoded (and a bad one counted) by the shell."""
    return app.topic(settings.topics.replay, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def attach_replay_agent(app: Any, settings: Settings, serde: AvroSerde,
                        registry: CollectorRegistry) -> Any:
    """Register the agent and its flush timer on ``app``; returns the agent."""
    conf = settings.widgets
    shell = ReplayShell(
        app=app, serde=serde, widgets_topic=settings.topics.widgets,
        views=ReplayViews(settings.topics.partitions, conf.coalesce_interval_ms / 1000.0,
                          conf.replay_idle_timeout_s, conf.replay_max_views),
        metrics=ReplayMetrics(registry), max_age_s=conf.replay_idle_timeout_s)

    async def replays(stream: Any) -> None:
        n = 0
        # Auto-ack per record: nothing of a view needs to survive the process.
        async for event in stream.events():
            shell.fold(event)
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def tick() -> None:
        await shell.send_due()

    app.timer(interval=conf.flush_tick_ms / 1000.0, name="agentwatch.replays.flush")(tick)
    return app.agent(replay_topic(app, settings), name=AGENT_NAME, concurrency=1,
                     supervisor_strategy=CrashingSupervisor)(replays)
