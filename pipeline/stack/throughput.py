"""Throughput of each running component, from two scrapes of its /metrics (`agentwatch status`).

Each component has one counter that says how much it moved (events received, messages processed
or consumed, widget updates read). Status scrapes every component, waits ``interval_s``, scrapes
again: the rate is the difference over the measured time, so it says what the component does now,
not an average since it started (which an idle hour would drown); the counter itself is shown
too, as the total since the process started.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.settings import Settings
from pipeline.stack.components import COMPONENTS, ComponentSpec

THROUGHPUT_COUNTERS: dict[str, tuple[str, str]] = {
    "collector": ("agentwatch_collector_events_received_total", "events received"),
    "worker": ("agentwatch_worker_messages_total", "ingest messages processed"),
    "clickhouse-sink": ("agentwatch_sink_messages_consumed_total", "messages consumed"),
    "archive-sink": ("agentwatch_sink_messages_consumed_total", "messages consumed"),
    "alerts": ("agentwatch_sink_messages_consumed_total", "alerts consumed"),
    "gateway": ("agentwatch_gateway_updates_total", "widget updates read"),
    "sampler": ("agentwatch_sampler_events_total", "events sent"),
}
"""Component name -> (counter, what it counts); every sample of the counter is summed."""


@dataclass(frozen=True)
class Throughput:
    component: str
    metric: str
    unit: str
    total: float | None
    """Counter value at the second scrape (None: /metrics did not answer)."""
    per_s: float | None
    """Rate between the two scrapes (None when either scrape failed)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def counter_total(text: str, name: str) -> float | None:
    """Sum of every sample of counter ``name`` in Prometheus text; None if it has none."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if not rest.startswith(("{", " ")):
            continue  # another metric sharing the prefix
        try:
            total += float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        found = True
    return total if found else None


def _scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())
    except (OSError, ValueError):
        return None


def measure_throughput(settings: Settings, names: list[str], interval_s: float = 1.0,
                       *, scrape: Callable[[str], str | None] = _scrape,
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> list[Throughput]:
    """Throughput of the components in ``names`` (those with a known counter)."""
    specs: list[tuple[ComponentSpec, str, str]] = [
        (spec, *THROUGHPUT_COUNTERS[spec.name]) for spec in COMPONENTS
        if spec.name in names and spec.name in THROUGHPUT_COUNTERS]

    def read_all() -> tuple[float, list[float | None]]:
        values: list[float | None] = []
        for spec, metric, _unit in specs:
            text = scrape(spec.metrics_url(settings))
            values.append(None if text is None else counter_total(text, metric) or 0.0)
        return clock(), values

    first_at, first = read_all()
    sleep(interval_s)
    second_at, second = read_all()
    elapsed = max(second_at - first_at, 1e-6)
    out: list[Throughput] = []
    for (spec, metric, unit), a, b in zip(specs, first, second, strict=True):
        rate = None if a is None or b is None else max(0.0, b - a) / elapsed
        out.append(Throughput(spec.name, metric, unit, b, rate))
    return out
