"""command.resources and network.transfer (host sampler): counted as what they are, never twice."""

from __future__ import annotations

import itertools
from typing import Any

from pipeline.model import new_event
from processors.patterns.detectors import MINUTE_US, PatternConfig, observe
from processors.widgets.reducers import apply, new_state, render

T0 = 1_700_000_000_000_000
_ids = itertools.count()


def ev(event_type: str, payload: dict[str, Any], minute: float = 0, **kw: Any) -> dict[str, Any]:
    return new_event(event_type, "s-1", payload, timestamp_us=T0 + int(minute * MINUTE_US),
                     event_id=f"e{next(_ids)}", source=kw.pop("source", "hook"), **kw)


def replay(events: list[dict[str, Any]]) -> dict[str, Any]:
    state = new_state("s-1")
    for e in events:
        apply(state, e)
    return state


def run_pair(minute: float, tool_use_id: str, peak: float) -> list[dict[str, Any]]:
    """One Bash run as the pipeline sees it: the hook's event, then the sampler's figures."""
    return [
        ev("command.executed", {"binary": "pytest", "args": ["-q"], "exit_code": 0,
                                "duration_ms": 2000}, minute, tool_use_id=tool_use_id),
        ev("command.resources", {"binary": "pytest", "args": ["-q"], "duration_ms": 2000,
                                 "cpu_user_ms": 1500, "cpu_system_ms": 300,
                                 "peak_memory_mib": peak}, minute + 0.01,
           tool_use_id=tool_use_id, source="sdk", metadata={"producer": "sampler"}),
    ]


def test_a_run_with_its_resources_is_one_command_whose_cost_counts_once() -> None:
    executed, resources = run_pair(0, "toolu_1", 256.0)
    state = new_state("s-1")
    assert "cost" not in apply(state, executed)  # no resource figures in the hook's event
    assert "cost" in apply(state, resources)  # the estimate moved: the widget is re-sent
    assert render(state, "session_summary")["counts"]["commands"] == 1
    assert state["cost"]["cpu_ms"] == 1800
    assert state["cost"]["mem_mib_ms"] == 256.0 * 2000
    assert render(state, "cost")["resource_estimate_usd"] > 0


def test_resources_alone_do_not_resolve_or_raise_errors() -> None:
    failed = ev("command.executed", {"binary": "pytest", "args": [], "exit_code": 1}, 0,
                severity="error")
    state = replay([failed, *run_pair(1, "toolu_2", 10.0)[1:]])
    assert render(state, "error_log")["open"] == 1
    assert render(state, "session_summary")["counts"]["errors"] == 1


def test_network_transfer_adds_bytes_but_no_request() -> None:
    state = replay([
        ev("network.request", {"protocol": "https", "domain": "140.82.112.3"}, 0),
        ev("network.transfer", {"protocol": "https", "domain": "140.82.112.3",
                                "bytes_sent": 1200, "bytes_received": 48_000}, 0.5),
        ev("network.transfer", {"protocol": "https", "domain": "140.82.112.3",
                                "bytes_sent": 0, "bytes_received": 1000}, 1),
    ])
    data = render(state, "network_trace")
    assert data["by_domain"] == [{"domain": "140.82.112.3", "requests": 1, "bytes": 50_200}]
    assert [r["domain"] for r in data["recent"]] == ["140.82.112.3"]


def test_memory_growth_reads_the_sampler_peaks_and_not_the_hook_runs() -> None:
    cfg = PatternConfig()
    state: dict[str, Any] = {}
    events = [e for i, peak in enumerate([100.0, 130.0, 170.0, 230.0])
              for e in run_pair(i, f"toolu_{i}", peak)]
    alerts = [a for e in events for a in observe(state, e, cfg, now_us=e["timestamp"])]
    assert [a["pattern"] for a in alerts] == ["memory_growth"]
    # Evidence is the sampler's events: the hook's runs carry no peak.
    resources = {e["event_id"] for e in events if e["event_type"] == "command.resources"}
    assert set(alerts[0]["evidence_event_ids"]) <= resources
