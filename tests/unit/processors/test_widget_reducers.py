from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from pipeline.model import new_event
from processors.widgets.reducers import WIDGETS, apply, heat, new_state, render

T0 = 1_700_000_000_000_000
MIN = 60_000_000
_ids = itertools.count()


def ev(
    event_type: str, payload: dict[str, Any], minute: float, agent: str = "main", **kw: Any
) -> dict[str, Any]:
    return new_event(event_type, "s-1", payload, timestamp_us=T0 + int(minute * MIN),
                     event_id=f"e{next(_ids)}", agent=agent, source="hook", **kw)


def replay(events: list[dict[str, Any]]) -> dict[str, Any]:
    state = new_state("s-1")
    for e in events:
        apply(state, e)
    return state


SCRIPT = [
    ev("session.started", {}, 0),
    ev("user.prompt", {"prompt_length": 40}, 0.1),
    ev("file.read", {"path": "src/app/main.py"}, 0.5),
    ev("file.write", {"path": "src/app/main.py", "lines_added": 10, "lines_removed": 2}, 2),
    ev("file.write", {"path": "src/app/util.py", "lines_added": 5, "lines_removed": 0}, 3),
    ev("file.write", {"path": "tests/test_main.py", "lines_added": 7, "lines_removed": 1}, 4),
    ev("test.executed", {"suite": "tests/test_main.py", "test_name": "test_a", "outcome": "failed",
                         "duration_ms": 120}, 5),
    ev("file.write", {"path": "src/app/main.py", "lines_added": 1, "lines_removed": 1}, 6),
    ev("test.executed", {"suite": "tests/test_main.py", "test_name": "test_a", "outcome": "passed",
                         "duration_ms": 110}, 7),
    ev("llm.request", {"model": "claude-sonnet", "input_tokens": 1000, "output_tokens": 200,
                       "cache_read_tokens": 50, "cost_usd": 0.25}, 7.5),
    ev("llm.request", {"model": "claude-haiku", "input_tokens": 10, "output_tokens": 5,
                       "cost_usd": 0.01}, 7.6, agent="sub-1", metadata={"parent_agent": "main"}),
    ev("resource.sample", {"memory_mib": 512.0, "cpu_pct": 35.0, "memory_limit_mib": 2048.0}, 8),
    ev("network.request", {"protocol": "https", "domain": "pypi.org", "bytes_sent": 100,
                           "bytes_received": 900}, 8.5),
    ev("session.ended", {"reason": "exit"}, 10),
]


def test_session_summary_counts_exactly() -> None:
    data = render(replay(SCRIPT), "session_summary")
    assert data["status"] == "completed"
    assert data["counts"] == {"files_modified": 3, "tests_run": 2, "tests_passed": 1,
                              "tests_failed": 1, "errors": 1, "commands": 0, "builds_failed": 0}
    assert data["events"] == len(SCRIPT)
    assert data["agents"] == ["main", "sub-1"]


def test_error_is_resolved_when_the_same_test_later_passes() -> None:
    state = replay(SCRIPT[:7])
    errs = render(state, "error_log")
    assert errs["open"] == 1 and errs["errors"][0]["status"] == "open"
    assert errs["errors"][0]["type"] == "test_failure"
    errs = render(replay(SCRIPT), "error_log")
    assert errs["open"] == 0 and errs["errors"][0]["status"] == "resolved"


def test_heatmap_by_directory() -> None:
    data = render(replay(SCRIPT), "file_heatmap")
    by_dir = {d["directory"]: d for d in data["directories"]}
    assert by_dir["src/app"]["files_modified"] == 2
    assert (by_dir["src/app"]["lines_added"], by_dir["src/app"]["lines_removed"]) == (16, 3)
    assert by_dir["tests"]["files_modified"] == 1
    assert all(0.0 <= d["heat"] <= 1.0 for d in data["directories"])
    assert by_dir["src/app"]["heat"] > by_dir["tests"]["heat"]  # more writes, more recent


def test_heat_formula() -> None:
    assert heat(0, 0, 1) == 0.5
    assert heat(0, 10 * MIN, 1) == 0.25
    assert heat(0, 0, 10) == pytest.approx(0.999, abs=0.001)


def test_cost_by_model_and_agent() -> None:
    data = render(replay(SCRIPT), "cost")
    assert data["total_usd"] == pytest.approx(0.26)
    models = {m["model"]: m for m in data["by_model"]}
    assert models["claude-sonnet"]["input_tokens"] == 1000
    assert models["claude-sonnet"]["cache_read_tokens"] == 50
    assert {a["agent"]: a["cost_usd"] for a in data["by_agent"]} == {"main": 0.25, "sub-1": 0.01}


def test_phases_are_inferred_and_progress_completes() -> None:
    mid = render(replay(SCRIPT[:6]), "session_progress")
    assert mid["current_phase"] == "coding"
    assert [p["status"] for p in mid["phases"]] == ["done", "active", "pending", "pending"]
    assert mid["completion_pct"] == 40.0 and mid["eta_minutes"] is not None
    end = render(replay(SCRIPT), "session_progress")
    assert end["completion_pct"] == 100.0
    assert end["phases"][0]["duration_ms"] == int(1.9 * MIN) // 1000  # planning 0.1 -> 2.0 min


def test_subagent_shows_its_parent() -> None:
    agents = {a["agent"]: a for a in render(replay(SCRIPT), "agent_timeline")["agents"]}
    assert agents["sub-1"]["parent"] == "main"
    assert agents["main"]["status"] == "done"


def test_resources_and_network() -> None:
    state = replay(SCRIPT)
    res = render(state, "resource_usage")
    assert res["memory_mib"] == 512.0 and res["memory_utilisation"] == 0.25
    net = render(state, "network_trace")
    assert net["by_domain"] == [{"domain": "pypi.org", "requests": 1, "bytes": 1000}]


def test_apply_reports_changed_widgets_only() -> None:
    state = new_state("s-1")
    changed = apply(state, ev("network.request", {"protocol": "https", "domain": "x.org"}, 0))
    assert "network_trace" in changed and "cost" not in changed and "file_heatmap" not in changed


def test_state_and_renders_are_json_and_replays_are_identical() -> None:
    a, b = replay(SCRIPT), replay(SCRIPT)
    assert json.loads(json.dumps(a)) == a
    for w in WIDGETS:
        assert render(a, w) == render(b, w)
        json.dumps(render(a, w))


def test_session_summary_names_the_owner_from_metadata() -> None:
    assert render(replay(SCRIPT), "session_summary")["user_id"] is None
    owned = [ev("session.started", {}, 0, metadata={"user_id": "alice"}),
             ev("file.write", {"path": "a.py"}, 1),
             ev("file.write", {"path": "b.py"}, 2, metadata={"user_id": "mallory"})]
    assert render(replay(owned), "session_summary")["user_id"] == "alice"


def test_error_log_shows_every_field_but_the_key_in_order_newest_first() -> None:
    state = replay([*SCRIPT[:7], ev("test.executed", {
        "suite": "tests/test_main.py", "test_name": "test_b", "outcome": "failed"}, 5.5)])
    errs = render(state, "error_log")
    assert [e["event_id"] for e in errs["errors"]] == [e["event_id"] for e in state["errors"][::-1]]
    assert [list(e) for e in errs["errors"]] == [
        [k for k in e if k != "key"] for e in state["errors"][::-1]]
    assert errs["open"] == 2
    assert all("key" in e for e in state["errors"])  # the state keeps it
