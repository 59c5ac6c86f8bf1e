"""Fan one alert out to every channel, once: de-duplication, severity filter, dead-lettering.

An alert counts as handled when every channel either delivered it or refused it for good
(``DeliveryError``: it is appended to the dead-letter file). Anything else (a shutdown during a
retry) propagates, so the consumer does not commit past an alert it did not handle.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from consumers.alerting.channels import SEVERITY_RANK, Alert, Channel
from pipeline.errors import DeliveryError


class RecentIds:
    """Bounded set of the most recently handled alert ids (oldest forgotten first)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._ids

    def add(self, alert_id: str) -> None:
        self._ids[alert_id] = None
        self._ids.move_to_end(alert_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)


class DeadLetterFile:
    """Undeliverable alerts as JSON lines, appended and fsynced, for a human or a replay script."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, alerts: Sequence[Alert], channel: str, error: str) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.path.open("a", encoding="utf-8") as f:
            for alert in alerts:
                f.write(json.dumps({"failed_at": now, "channel": channel, "error": error[:1000],
                                    "alert": alert}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter("agentwatch_alerts_delivered_total", "Alerts delivered",
                                 ["channel"], registry=registry)
        self.dead_lettered = Counter("agentwatch_alerts_dead_lettered_total",
                                     "Alerts written to the dead-letter file", ["channel"],
                                     registry=registry)
        self.skipped = Counter("agentwatch_alerts_skipped_total",
                               "Alerts not delivered: duplicate, below min_severity, or stale",
                               ["reason"], registry=registry)


class Dispatcher:
    def __init__(self, channels: Sequence[Channel], dead_letters: DeadLetterFile,
                 metrics: DispatchMetrics, *, min_severity: str = "info",
                 dedup_capacity: int = 10_000, max_age_s: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.channels = list(channels)
        self._dead = dead_letters
        self._metrics = metrics
        self._min_rank = SEVERITY_RANK[min_severity]
        self._seen = RecentIds(dedup_capacity)
        self._max_age_ms = max_age_s * 1000.0
        self._clock = clock

    async def dispatch(self, alert: Alert, published_ms: int | None = None) -> bool:
        """Deliver ``alert`` unless it is a duplicate, below the severity floor, or stale
        (published over ``max_age_s`` ago); False when it was skipped as stale."""
        alert_id = str(alert["alert_id"])
        if alert_id in self._seen:
            self._metrics.skipped.labels(reason="duplicate").inc()
            return True
        if (self._max_age_ms and published_ms is not None and published_ms > 0
                and self._clock() * 1000.0 - published_ms > self._max_age_ms):
            self._metrics.skipped.labels(reason="stale").inc()
            self._seen.add(alert_id)
            return False
        if SEVERITY_RANK.get(str(alert["severity"]), 0) < self._min_rank:
            self._metrics.skipped.labels(reason="severity").inc()
            self._seen.add(alert_id)
            return True
        await asyncio.gather(*(self._deliver(ch, alert) for ch in self.channels))
        self._seen.add(alert_id)
        return True

    async def _deliver(self, channel: Channel, alert: Alert) -> None:
        try:
            await channel.deliver(alert)
        except DeliveryError as exc:
            await asyncio.to_thread(self._dead.write, [alert], channel.name, str(exc))
            self._metrics.dead_lettered.labels(channel=channel.name).inc()
        else:
            self._metrics.delivered.labels(channel=channel.name).inc()

    def give_up(self, alerts: Sequence[Alert], channel: str, error: str) -> None:
        """For channels that fail later than ``deliver`` (the email digest)."""
        self._dead.write(alerts, channel, error)
        self._metrics.dead_lettered.labels(channel=channel).inc(len(alerts))

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
