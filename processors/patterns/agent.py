"""The patterns agent: events -> detectors over per-session state (table) -> PatternAlerts.

Thin Faust shell around ``PatternProcessor``; like the widgets agent it acks a batch only after
Kafka acknowledged its alerts and changelog writes, and a timer looks for stalled sessions (a
stall is the absence of events, so no event can trigger it). Alert ids are deterministic and the
state carries a replay guard: reprocessing after a crash neither repeats nor loses an alert.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.model import PATTERN_ALERT
from pipeline.serde import AvroSerde, serde_from_settings
from pipeline.settings import PatternSettings, Settings
from processors.checkpoint import Checkpointer, before_wait_empty
from processors.patterns.detectors import PatternConfig
from processors.patterns.processor import PatternProcessor
from processors.tables import PATTERN_TABLE, ChangelogStore, owned_partitions, state_table
from processors.topics import WorkerTopics

log = logging.getLogger(__name__)

AGENT_NAME = "agentwatch.patterns"
YIELD_EVERY = 128


def pattern_config(s: PatternSettings) -> PatternConfig:
    return PatternConfig(
        compile_errors=s.compile_errors, compile_window_us=int(s.compile_window_s * 1e6),
        memory_growth_pct=s.memory_growth_pct, memory_growth_runs=s.memory_growth_runs,
        slow_test_factor=s.slow_test_factor, slow_test_min_samples=s.slow_test_min_samples,
        stall_after_us=int(s.stall_after_s * 1e6), retry_storm_failures=s.retry_storm_failures,
        cost_usd_per_hour=s.cost_usd_per_hour, cost_window_us=int(s.cost_window_s * 1e6),
        evidence_limit=s.evidence_limit,
    )


class PatternMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.alerts = Counter("agentwatch_pattern_alerts", "Alerts and notification triggers sent.",
                              ["pattern"], registry=registry)
        self.skipped = Counter("agentwatch_pattern_replays_skipped",
                               "Events already folded in (replays, duplicates).", registry=registry)
        self.live = Gauge("agentwatch_pattern_live_sessions",
                          "Sessions watched for stalls.", registry=registry)


@dataclass
class PatternShell:
    app: Any
    serde: AvroSerde
    events_topic: str
    patterns_topic: str
    processor: PatternProcessor
    store: ChangelogStore
    checkpoints: Checkpointer
    metrics: PatternMetrics

    async def send(self, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            # The plain producer, key = session_id, default (murmur2) partitioner; see
            # processors/widgets/agent.py for why not Topic.send.
            self.checkpoints.output(await self.app.producer.send(
                self.patterns_topic, alert["session_id"].encode(),
                self.serde.encode(PATTERN_ALERT, alert), None, None, None))
            self.metrics.alerts.labels(alert["pattern"]).inc()

    async def checkpoint(self) -> None:
        held, outputs = self.checkpoints.take()
        self.processor.persist(owned_partitions(self.app, self.events_topic))
        await asyncio.gather(*await self.store.write(), *outputs)
        for stream, event in held:
            await stream.ack(event)
        self.metrics.live.set(self.processor.live_sessions())


def attach_pattern_agent(app: Any, topics: WorkerTopics, settings: Settings,
                         registry: CollectorRegistry) -> Any:
    """Register the pattern table, agent, checkpoint and stall timers on ``app``; returns the agent."""
    conf = settings.patterns
    table = state_table(app, PATTERN_TABLE, settings.topics.partitions,
                        "Failure-pattern detector state per session (windows, replay guard).")
    store = ChangelogStore(table, app)
    shell = PatternShell(
        app=app, serde=serde_from_settings(settings), events_topic=settings.topics.events,
        patterns_topic=settings.topics.patterns,
        processor=PatternProcessor(store, pattern_config(conf), notifications=conf.notifications),
        store=store,
        checkpoints=Checkpointer(settings.widgets.checkpoint_interval_ms / 1000.0,
                                 settings.widgets.checkpoint_max_events),
        metrics=PatternMetrics(registry))

    async def patterns(stream: Any) -> None:
        before_wait_empty(app.consumer, shell.checkpoint)
        manual = stream.noack()
        n = 0
        async for event in manual.events():
            msg = event.message
            skipped = shell.processor.skipped
            alerts = shell.processor.fold(msg.partition, msg.offset, event.value)
            shell.metrics.skipped.inc(shell.processor.skipped - skipped)
            shell.checkpoints.hold(manual, event)
            if alerts:
                await shell.send(alerts)
            n += 1
            if shell.checkpoints.held >= shell.checkpoints.max_held:
                await shell.checkpoint()
            elif n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def tick() -> None:
        if shell.checkpoints.due():
            await shell.checkpoint()

    async def stalls() -> None:
        alerts = shell.processor.check_stalls(owned_partitions(app, settings.topics.events))
        if alerts:
            log.info("stalled sessions", extra={"sessions": [a["session_id"] for a in alerts]})
            await shell.send(alerts)

    async def recovered() -> None:
        n = shell.processor.resume(store.items())
        log.info("pattern state recovered", extra={"live_sessions": n})

    table.on_recover(recovered)
    app.timer(interval=settings.widgets.flush_tick_ms / 1000.0,
              name="agentwatch.patterns.checkpoint")(tick)
    app.timer(interval=conf.stall_check_interval_s, name="agentwatch.patterns.stalls")(stalls)
    return app.agent(topics.events, name=AGENT_NAME, concurrency=1,
                     supervisor_strategy=CrashingSupervisor)(patterns)
