"""The alert rules behave as their runbook says: promtool's rule unit tests in
deploy/prometheus/alerts_test.yml (a stuck sink's sawtooth gauge fires, ordinary rebalances and a
single failed commit do not). promtool is not a Python package; the promtool test runs where it
is on PATH (or AGENTWATCH_PROMTOOL names it) and is skipped elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from deploy_helpers import DEPLOY, load_yaml

RULES = DEPLOY / "prometheus/alerts.yml"
RULE_TESTS = DEPLOY / "prometheus/alerts_test.yml"


def _promtool() -> str | None:
    return os.environ.get("AGENTWATCH_PROMTOOL") or shutil.which("promtool")


def _alert_names() -> set[str]:
    return {rule["alert"] for group in load_yaml(RULES)["groups"] for rule in group["rules"]}


def test_rule_tests_read_the_shipped_rules_and_name_existing_alerts() -> None:
    tests: dict[str, Any] = load_yaml(RULE_TESTS)
    assert tests["rule_files"] == [RULES.name]
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    assert tested, "alerts_test.yml tests no alert"
    assert tested - _alert_names() == set()
    # The group watchdog's alerts and the commit-failure alert are the ones with a sawtooth or
    # single-event pitfall; each keeps a test.
    assert {"AgentwatchSinkNotInGroup", "AgentwatchSinkConsumerRecreated",
            "AgentwatchSinkCommitFailing"} <= tested


@pytest.mark.skipif(_promtool() is None, reason="promtool not on PATH (set AGENTWATCH_PROMTOOL)")
def test_promtool_rule_unit_tests_pass() -> None:
    promtool = _promtool()
    assert promtool is not None
    check = subprocess.run([promtool, "check", "rules", str(RULES)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
