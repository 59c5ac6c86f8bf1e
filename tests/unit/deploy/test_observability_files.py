"""Grafana dashboard and Prometheus alerts read only metrics the components really export."""

from __future__ import annotations

import json
from typing import Any

import pytest
from deploy_helpers import DEPLOY, defined_metrics, exported_series, load_yaml, metric_names_in

from pipeline.settings import REPO_ROOT

DASHBOARD = DEPLOY / "grafana/dashboards/agentwatch.json"
ALERTS = DEPLOY / "prometheus/alerts.yml"


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def test_metric_catalog_is_read_from_the_code() -> None:
    defined = defined_metrics()
    # A few anchors so an empty or broken scan cannot pass the tests below.
    assert defined["agentwatch_worker_messages"] == "Counter"
    assert defined["agentwatch_sink_flush_duration_seconds"] == "Histogram"
    assert defined["agentwatch_gateway_clients"] == "Gauge"
    series = exported_series()
    assert "agentwatch_worker_messages_total" in series
    assert "agentwatch_worker_messages" not in series  # counters are only exposed with _total
    assert "agentwatch_sink_flush_duration_seconds_bucket" in series


def test_dashboard_is_valid_and_wired_to_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/agentwatch.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("expr", _dashboard_exprs())
def test_dashboard_metrics_exist(expr: str) -> None:
    names = metric_names_in(expr)
    assert names, expr
    assert names - exported_series() - {"up", "kafka_consumergroup_lag"} == set(), expr


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
def test_alert_metrics_exist(rule: dict[str, Any]) -> None:
    names = metric_names_in(rule["expr"])
    assert names, rule["expr"]
    assert names - exported_series() - {"up", "kafka_consumergroup_lag"} == set(), rule["expr"]
    assert rule["labels"]["severity"] in {"warning", "critical"}


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_a_runbook_section(rule: dict[str, Any]) -> None:
    runbook = rule["annotations"]["runbook"]
    doc, anchor = runbook.split("#")
    assert anchor == rule["alert"].lower()
    headings = [ln.lstrip("#").strip() for ln in (REPO_ROOT / doc).read_text().splitlines()
                if ln.startswith("### ")]
    assert rule["alert"] in headings
