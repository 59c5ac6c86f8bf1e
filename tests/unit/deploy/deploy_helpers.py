"""Shared readers for the deployment-file tests: YAML documents and the exported metric names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S_DIR = DEPLOY / "k8s"

_METRIC_DEF = re.compile(r'\b(Counter|Gauge|Histogram|Summary)\(\s*"(agentwatch_\w+)"')
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
}
EXTERNAL_METRICS = frozenset({"up", "kafka_consumergroup_lag"})
"""Series that come from Prometheus itself and from kafka-exporter, not from agentwatch."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def defined_metrics() -> dict[str, str]:
    """Metric name -> prometheus_client type, read from the components' source."""
    found: dict[str, str] = {}
    for folder in ("pipeline", "producers", "processors", "consumers"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for match in _METRIC_DEF.finditer(path.read_text()):
                found[match.group(2)] = match.group(1)
    return found


def exported_series() -> set[str]:
    """Names of the series the components expose on /metrics (prometheus_client's naming)."""
    series: set[str] = set()
    for name, kind in defined_metrics().items():
        base = name.removesuffix("_total") if kind == "Counter" else name
        series.update(base + suffix for suffix in _SUFFIXES[kind])
    return series


def metric_names_in(expr: str) -> set[str]:
    """Metric names an expression reads: agentwatch_* tokens and the known external series."""
    tokens = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", expr))
    return {t for t in tokens if t.startswith("agentwatch_") or t in EXTERNAL_METRICS}
