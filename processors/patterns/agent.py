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
from processors.patterns.detectors import PatternConfig
from processors.patterns.processor import PatternProcessor
from processors.tables import PATTERN_TABLE, ChangelogStore, state_table
from processors.topics import WorkerTopics

log = logging.getLogger(__name__)

AGENT_NAME = "agentwatch.patterns"
_YIELD_EVERY = 512


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
    metrics: PatternMetrics

    def owned(self) -> set[int] | None:
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return None
        try:
            return {tp.partition for tp in consumer.assignment() if tp.topic == self.events_topic}
        except Exception:
            return None

    async def send(self, alerts: list[dict[str, Any]]) -> list[Any]:
        futures = []
        for alert in alerts:
            # The plain producer, key = session_id, default (murmur2) partitioner; see
            # processors/widgets/agent.py for why not Topic.send.
            futures.append(await self.app.producer.send(
                self.patterns_topic, alert["session_id"].encode(),
                self.serde.encode(PATTERN_ALERT, alert), None, None, None))
            self.metrics.alerts.labels(alert["pattern"]).inc()
        self.processor.persist(self.owned())
        futures += self.store.take_futures()
        self.metrics.live.set(self.processor.live_sessions())
        return futures


def attach_pattern_agent(app: Any, topics: WorkerTopics, settings: Settings,
                         registry: CollectorRegistry) -> Any:
    """Register the pattern table, agent and stall timer on ``app``; returns the agent."""
    conf = settings.patterns
    table = state_table(app, PATTERN_TABLE, settings.topics.partitions,
                        "Failure-pattern detector state per session (windows, replay guard).")
    store = ChangelogStore(table)
    shell = PatternShell(
        app=app, serde=serde_from_settings(settings), events_topic=settings.topics.events,
        patterns_topic=settings.topics.patterns,
        processor=PatternProcessor(store, pattern_config(conf), notifications=conf.notifications),
        store=store, metrics=PatternMetrics(registry))

    async def patterns(stream: Any) -> None:
        within = settings.widgets.batch_within_ms / 1000.0
        async for batch in stream.take_events(settings.widgets.batch_max, within=within):
            alerts: list[dict[str, Any]] = []
            skipped_before = shell.processor.skipped
            for i, event in enumerate(batch):
                msg = event.message
                alerts += shell.processor.fold(msg.partition, msg.offset, event.value)
                if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            shell.metrics.skipped.inc(shell.processor.skipped - skipped_before)
            await asyncio.gather(*await shell.send(alerts))

    async def stalls() -> None:
        alerts = shell.processor.check_stalls(shell.owned())
        if alerts:
            log.info("stalled sessions", extra={"sessions": [a["session_id"] for a in alerts]})
        await asyncio.gather(*await shell.send(alerts))

    async def recovered() -> None:
        n = shell.processor.resume(store.items())
        log.info("pattern state recovered", extra={"live_sessions": n})

    table.on_recover(recovered)
    app.timer(interval=conf.stall_check_interval_s, name="agentwatch.patterns.stalls")(stalls)
    return app.agent(topics.events, name=AGENT_NAME, concurrency=1,
                     supervisor_strategy=CrashingSupervisor)(patterns)
