"""The pipeline's own long-running components that `agentwatch up` starts when they exist.

Components are named by module path and started as ``agentwatch <command>`` child processes, so
pipeline/ never imports producers/, processors/ or consumers/: it only asks whether they exist.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.settings import HttpServiceSettings, Settings


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    module: str
    command: tuple[str, ...]
    http: Callable[[Settings], HttpServiceSettings]

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli", *self.command]

    def health_url(self, settings: Settings) -> str:
        http = self.http(settings)
        return f"http://{http.host}:{http.port}/health"

    def metrics_url(self, settings: Settings) -> str:
        http = self.http(settings)
        return f"http://{http.host}:{http.port}/metrics"


# Order matters: upstream first on `up`, and `down` stops them in reverse.
COMPONENTS: tuple[ComponentSpec, ...] = (
    ComponentSpec("worker", "processors.app", ("worker",), lambda s: s.worker_http),
    ComponentSpec("clickhouse-sink", "consumers.clickhouse.sink", ("sink", "clickhouse"),
                  lambda s: s.clickhouse_sink_http),
    ComponentSpec("archive-sink", "consumers.archive.sink", ("sink", "archive"),
                  lambda s: s.archive_sink_http),
    ComponentSpec("alerts", "consumers.alerting.main", ("alerts",), lambda s: s.alerts_http),
    ComponentSpec("gateway", "consumers.gateway.app", ("gateway",), lambda s: s.gateway),
    ComponentSpec("collector", "producers.collector.app", ("collector",), lambda s: s.collector),
    ComponentSpec("sampler", "producers.sampler.main", ("sampler",), lambda s: s.sampler),
)
