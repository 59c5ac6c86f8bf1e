"""Pattern side of the aggregates agent: events -> detectors over per-session state -> PatternAlerts.

``PatternShell`` wires ``PatternProcessor`` to its changelogged table and to the patterns
topic; ``processors/aggregates.py`` drives it from the one aggregates agent. A timer looks for
stalled sessions (a stall is the absence of events, so no event can trigger it). Alert ids are
deterministic and the state carries a replay guard: reprocessing after a crash neither loses an
alert nor makes a new one (a repeated alert keeps its id; consumers de-duplicate).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.model import PATTERN_ALERT
from pipeline.serde import AvroSerde, serde_from_settings
from pipeline.settings import PatternSettings, Settings
from processors.checkpoint import Checkpointer
from processors.patterns.detectors import PatternConfig
from processors.patterns.processor import PatternProcessor
from processors.tables import PATTERN_TABLE, ChangelogStore, owned_partitions, state_table

log = logging.getLogger(__name__)


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

    def fold(self, event: Any) -> list[dict[str, Any]]:
        msg = event.message
        skipped = self.processor.skipped
        alerts = self.processor.fold(msg.partition, msg.offset, event.value)
        self.metrics.skipped.inc(self.processor.skipped - skipped)
        return alerts

    def send_soon(self, alerts: list[dict[str, Any]]) -> None:
        """Queue the alerts; their delivery joins the outputs of the next checkpoint *now*, in
        the same step as the fold that raised them, so no state snapshot can record an alert
        as fired without also waiting for its delivery."""
        if alerts:
            self.checkpoints.output(asyncio.ensure_future(self._deliver(alerts)))
            for alert in alerts:
                self.metrics.alerts.labels(alert["pattern"]).inc()
        self.metrics.live.set(self.processor.live_sessions())

    async def _deliver(self, alerts: list[dict[str, Any]]) -> None:
        # The plain producer, key = session_id, default (murmur2) partitioner; see
        # processors/widgets/agent.py for why not Topic.send.
        futures = [await self.app.producer.send(
            self.patterns_topic, alert["session_id"].encode(),
            self.serde.encode(PATTERN_ALERT, alert), None, None, None) for alert in alerts]
        await asyncio.gather(*futures)

    async def check_stalls(self) -> None:
        alerts = self.processor.check_stalls(owned_partitions(self.app, self.events_topic))
        if alerts:
            log.info("stalled sessions", extra={"sessions": [a["session_id"] for a in alerts]})
        self.send_soon(alerts)


def build_pattern_shell(app: Any, settings: Settings, registry: CollectorRegistry,
                        checkpoints: Checkpointer) -> PatternShell:
    """The pattern table (with its recovery callback), the shell and its stall timer."""
    conf = settings.patterns
    table = state_table(app, PATTERN_TABLE, settings.topics.partitions,
                        "Failure-pattern detector state per session (windows, replay guard).")
    store = ChangelogStore(table, app)
    shell = PatternShell(
        app=app, serde=serde_from_settings(settings), events_topic=settings.topics.events,
        patterns_topic=settings.topics.patterns,
        processor=PatternProcessor(store, pattern_config(conf), notifications=conf.notifications),
        store=store, checkpoints=checkpoints, metrics=PatternMetrics(registry))

    async def recovered() -> None:
        n = shell.processor.resume(store.items())
        log.info("pattern state recovered", extra={"live_sessions": n})

    table.on_recover(recovered)
    app.timer(interval=conf.stall_check_interval_s,
              name="agentwatch.patterns.stalls")(shell.check_stalls)
    return shell
