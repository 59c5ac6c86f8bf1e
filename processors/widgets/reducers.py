"""Live dashboard widget state: pure reducers from one event to the session's widget states.

``apply(state, event)`` folds an event into a JSON-able per-session dict and returns the names of
the widgets it changed; ``render(state, widget)`` shapes a widget's data for the WidgetUpdate
message (field names follow the dashboard protocol). The aggregates loop stores the state in a
table keyed by session_id and coalesces renders; nothing here knows about Kafka or time except
the events' own timestamps, so a replay renders exactly what the live run rendered.
"""

from __future__ import annotations

import posixpath
from typing import Any

from pipeline.model import (
    AGENT_STATE_TRANSITION,
    AGENT_TASK_EVENT,
    BUILD_EVENT,
    COMMAND_EVENT,
    FILE_EVENT,
    LLM_REQUEST,
    NETWORK_REQUEST,
    RESOURCE_SAMPLE,
    TEST_EVENT,
)

State = dict[str, Any]
Event = dict[str, Any]

WIDGETS = ("session_progress", "agent_timeline", "file_heatmap", "error_log", "resource_usage",
           "network_trace", "cost", "session_summary")
PHASES = ("planning", "coding", "testing", "review")
PHASE_PROGRESS = {"planning": 10.0, "coding": 40.0, "testing": 75.0, "review": 90.0}
ERROR_LOG_LIMIT = 50
NETWORK_LIMIT = 50
RESOURCE_POINTS = 120
IDLE_AFTER_US = 60_000_000
HEAT_HALF_LIFE_US = 10 * 60_000_000
# Resource-based cost estimate (design): CPU-hours and GiB-hours at on-demand cloud prices.
CPU_HOUR_USD = 0.04
GIB_HOUR_USD = 0.005
SUCCESS = ("success", "succeeded", "passed", "ok")


def new_state(session_id: str) -> State:
    return {
        "session_id": session_id, "first_ts": None, "last_ts": None, "last_event": None,
        "status": "in_progress", "events": 0,
        "phase": None, "phases": {}, "progress_pct": None, "milestones": [],
        "milestones_total": None, "agents": {},
        "dirs": {}, "errors": [], "resources": {"series": [], "peak_memory_mib": 0.0,
                                                 "peak_cpu_pct": 0.0},
        "network": {"recent": [], "domains": {}},
        "cost": {"models": {}, "agents": {}, "total_usd": 0.0, "cpu_ms": 0, "mem_mib_ms": 0.0},
        "counts": {"files_modified": 0, "tests_run": 0, "tests_passed": 0, "tests_failed": 0,
                   "errors": 0, "commands": 0, "builds_failed": 0},
        "files_seen": [],
        "user_id": None,
    }


def _payload(event: Event) -> tuple[str, dict[str, Any]]:
    name, body = event.get("payload") or ("", {})
    return name, body


def _is_error(event: Event) -> bool:
    return event.get("severity") in ("error", "critical") or event.get("event_type", "").endswith(
        ".failed")


def _set_phase(state: State, phase: str, ts: int) -> bool:
    if phase not in PHASES or state["phase"] == phase:
        return False
    current = state["phase"]
    if current is not None:
        p = state["phases"][current]
        p["status"], p["duration_ms"] = "done", p["duration_ms"] + (ts - p["since"]) // 1000
    entry = state["phases"].setdefault(phase, {"status": "active", "duration_ms": 0, "since": ts})
    entry.update(status="active", since=ts)
    state["phase"] = phase
    return True


def _inferred_phase(state: State, event: Event) -> str | None:
    """Heuristic for agents that report no phase: what the event mix says they are doing."""
    etype = event.get("event_type", "")
    name, body = _payload(event)
    if name == AGENT_TASK_EVENT and body.get("phase"):
        return str(body["phase"]).lower()
    if etype in ("file.write", "file.delete"):
        return "coding"
    if name in (TEST_EVENT, BUILD_EVENT):
        return "testing"
    if etype in ("file.read", "file.search", "user.prompt"):
        if state["phase"] is None:
            return "planning"
        if state["phase"] == "testing" and state["counts"]["tests_failed"] == 0:
            return "review"
    return None


def _agent(state: State, event: Event) -> dict[str, Any]:
    name = event.get("agent") or "unknown"
    ts = event["timestamp"]
    agent: dict[str, Any] | None = state["agents"].get(name)
    if agent is None:
        agent = state["agents"][name] = {
            "status": "active", "start": ts, "last": ts, "active_ms": 0, "idle_ms": 0,
            "tasks_completed": 0, "current_task": None, "parent": None,
        }
    gap = ts - agent["last"]
    if gap > 0:
        key = "idle_ms" if gap > IDLE_AFTER_US else "active_ms"
        agent[key] += gap // 1000
    agent["last"] = max(agent["last"], ts)
    if agent["status"] in ("idle", "done") and event.get("event_type") != "agent.task.completed":
        agent["status"] = "active"
    parent = (event.get("metadata") or {}).get("parent_agent")
    if parent:
        agent["parent"] = parent
    return agent


def _resolve_errors(state: State, key: str) -> None:
    for err in state["errors"]:
        if err["key"] == key and err["status"] == "open":
            err["status"] = "resolved"


def apply(state: State, event: Event) -> set[str]:
    """Fold one event into the session's state; returns the widgets whose data changed."""
    ts = event["timestamp"]
    name, body = _payload(event)
    etype = event.get("event_type", "")
    changed = {"session_summary", "agent_timeline"}
    state["events"] += 1
    state["first_ts"] = ts if state["first_ts"] is None else min(state["first_ts"], ts)
    state["last_ts"] = ts if state["last_ts"] is None else max(state["last_ts"], ts)
    state["last_event"] = {"event_id": event["event_id"], "event_type": etype, "timestamp": ts,
                           "agent": event.get("agent")}
    agent = _agent(state, event)
    owner = (event.get("metadata") or {}).get("user_id")
    if owner and not state.get("user_id"):
        # The session's owner is who started it; the gateway filters sessions by it.
        state["user_id"] = owner

    phase = _inferred_phase(state, event)
    if phase and _set_phase(state, phase, ts):
        changed.add("session_progress")

    if name == AGENT_TASK_EVENT:
        changed.add("session_progress")
        if body.get("progress_pct") is not None:
            state["progress_pct"] = float(body["progress_pct"])
        for m in body.get("milestones") or []:
            if m not in state["milestones"]:
                state["milestones"].append(m)
        total = (event.get("metadata") or {}).get("milestones_total")
        if total and total.isdigit():
            state["milestones_total"] = int(total)
        if etype == "agent.task.started":
            agent["current_task"] = body.get("input_description") or body.get("task_type")
        elif etype == "agent.task.completed":
            agent["tasks_completed"] += 1
            agent["current_task"] = None
        elif etype == "agent.task.failed":
            agent["status"], agent["current_task"] = "failed", None
    elif name == AGENT_STATE_TRANSITION:
        agent["status"] = {"idle": "idle", "done": "done", "failed": "failed"}.get(
            str(body.get("to_state")), "active")

    if name == FILE_EVENT and etype in ("file.write", "file.delete"):
        changed.add("file_heatmap")
        path = str(body.get("path") or "")
        d = state["dirs"].setdefault(posixpath.dirname(path) or ".", {
            "files": [], "lines_added": 0, "lines_removed": 0, "last_ts": ts, "writes": 0})
        if path not in d["files"]:
            d["files"].append(path)
            # Only a path new to its directory can be new to the session: the two lists grow
            # together, and the session's is the long one to scan.
            if path not in state["files_seen"]:
                state["files_seen"].append(path)
                state["counts"]["files_modified"] += 1
        d["lines_added"] += max(0, body.get("lines_added") or 0)
        d["lines_removed"] += max(0, body.get("lines_removed") or 0)
        d["last_ts"], d["writes"] = max(d["last_ts"], ts), d["writes"] + 1
        _resolve_errors(state, f"file:{path}")

    if name == TEST_EVENT:
        state["counts"]["tests_run"] += 1
        passed = body.get("outcome") in SUCCESS
        state["counts"]["tests_passed" if passed else "tests_failed"] += 1
        key = f"test:{body.get('suite')}::{body.get('test_name')}"
        if passed:
            _resolve_errors(state, key)
            changed.add("error_log")
    elif name == BUILD_EVENT and body.get("outcome") in SUCCESS:
        _resolve_errors(state, f"build:{body.get('component')}")
        changed.add("error_log")
    elif name == COMMAND_EVENT:
        # command.resources (host sampler) carries the CPU and memory of a run the hook's
        # command.executed already counted (same tool_use_id): cost yes, a second command no.
        if etype != "command.resources":
            state["counts"]["commands"] += 1
        cpu = (body.get("cpu_user_ms") or 0) + (body.get("cpu_system_ms") or 0)
        state["cost"]["cpu_ms"] += cpu
        if cpu:
            changed.add("cost")
        if body.get("peak_memory_mib") and body.get("duration_ms"):
            state["cost"]["mem_mib_ms"] += body["peak_memory_mib"] * body["duration_ms"]
            changed.add("cost")
        if body.get("exit_code") == 0:
            _resolve_errors(state, f"cmd:{body.get('binary')}")

    if _is_error(event) or (name == TEST_EVENT and body.get("outcome") not in SUCCESS) or (
            name == BUILD_EVENT and body.get("outcome") not in SUCCESS):
        changed.add("error_log")
        state["counts"]["errors"] += 1
        if name == BUILD_EVENT:
            state["counts"]["builds_failed"] += 1
        state["errors"].append(_error_entry(event, name, body))
        state["errors"] = state["errors"][-ERROR_LOG_LIMIT:]

    if name == RESOURCE_SAMPLE:
        changed.add("resource_usage")
        res = state["resources"]
        point = {"t": ts, "memory_mib": body.get("memory_mib"), "cpu_pct": body.get("cpu_pct")}
        res["series"] = [*res["series"], point][-RESOURCE_POINTS:]
        res["peak_memory_mib"] = max(res["peak_memory_mib"], body.get("memory_mib") or 0.0)
        res["peak_cpu_pct"] = max(res["peak_cpu_pct"], body.get("cpu_pct") or 0.0)
        res["memory_limit_mib"] = body.get("memory_limit_mib")
        res["cpu_limit_pct"] = body.get("cpu_limit_pct")

    if name == NETWORK_REQUEST:
        changed.add("network_trace")
        net = state["network"]
        dom = net["domains"].setdefault(str(body.get("domain")), {"requests": 0, "bytes": 0})
        dom["bytes"] += (body.get("bytes_sent") or 0) + (body.get("bytes_received") or 0)
        # network.transfer: more bytes on a connection already listed, not another request.
        if etype != "network.transfer":
            net["recent"] = [*net["recent"], {
                "t": ts, "protocol": body.get("protocol"), "domain": body.get("domain"),
                "endpoint": body.get("endpoint"), "status_code": body.get("status_code"),
                "bytes_sent": body.get("bytes_sent"),
                "bytes_received": body.get("bytes_received"),
                "duration_ms": body.get("duration_ms")}][-NETWORK_LIMIT:]
            dom["requests"] += 1

    if name == LLM_REQUEST:
        changed.add("cost")
        _add_llm_cost(state, event, body)

    if etype == "session.ended":
        failed = any(a["status"] == "failed" for a in state["agents"].values())
        state["status"] = "failed" if failed else "completed"
        if state["phase"]:
            p = state["phases"][state["phase"]]
            p["status"], p["duration_ms"] = "done", p["duration_ms"] + (ts - p["since"]) // 1000
            p["since"] = ts
        for a in state["agents"].values():
            if a["status"] == "active":
                a["status"] = "done"
        changed.add("session_progress")
    elif etype == "session.stalled":
        state["status"] = "stalled"
    elif state["status"] == "stalled":
        state["status"] = "in_progress"
    return changed


def _error_entry(event: Event, name: str, body: dict[str, Any]) -> dict[str, Any]:
    if name == TEST_EVENT:
        key = f"test:{body.get('suite')}::{body.get('test_name')}"
        etype: Any = "test_failure"
        msg: Any = f"{body.get('suite')}::{body.get('test_name')}"
        file: Any = None
    elif name == BUILD_EVENT:
        key, etype = f"build:{body.get('component')}", "build_failure"
        msg, file = f"build of {body.get('component')} failed", None
    elif name == COMMAND_EVENT:
        key, etype = f"cmd:{body.get('binary')}", "command_failure"
        msg = body.get("stderr_excerpt") or f"{body.get('binary')} exited {body.get('exit_code')}"
        file = None
    else:
        file = body.get("error_file") or (body.get("path") if name == FILE_EVENT else None)
        key = f"file:{file}" if file else f"event:{event['event_id']}"
        etype = body.get("error_type") or event.get("event_type")
        msg = body.get("error_message") or body.get("message") or event.get("event_type")
    return {
        "key": key, "event_id": event["event_id"], "t": event["timestamp"],
        "severity": event.get("severity"), "agent": event.get("agent"), "type": etype,
        "message": str(msg)[:500], "file": file, "line": body.get("error_line"),
        "status": "open",
    }


def _add_llm_cost(state: State, event: Event, body: dict[str, Any]) -> None:
    cost = state["cost"]
    model = cost["models"].setdefault(str(body.get("model")), {
        "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
        "cache_creation_tokens": 0, "cost_usd": 0.0, "requests": 0})
    for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
        model[k] += body.get(k) or 0
    usd = float(body.get("cost_usd") or 0.0)
    model["cost_usd"] += usd
    model["requests"] += 1
    cost["total_usd"] += usd
    agent = event.get("agent") or "unknown"
    cost["agents"][agent] = cost["agents"].get(agent, 0.0) + usd


def render(state: State, widget: str) -> dict[str, Any]:
    """The widget's data as the dashboard protocol carries it."""
    data: dict[str, Any] = _RENDERERS[widget](state)
    return data


def _progress(state: State) -> dict[str, Any]:
    pct = state["progress_pct"]
    if pct is None:
        pct = 100.0 if state["status"] == "completed" else PHASE_PROGRESS.get(state["phase"], 0.0)
    elapsed_min = ((state["last_ts"] or 0) - (state["first_ts"] or 0)) / 60_000_000
    eta = None
    if 0 < pct < 100 and elapsed_min > 0:
        eta = round((100 - pct) / (pct / elapsed_min), 1)
    phases = []
    for p in PHASES:
        entry = state["phases"].get(p)
        status = entry["status"] if entry else "pending"
        duration = entry["duration_ms"] if entry else 0
        if entry and status == "active":
            duration += ((state["last_ts"] or entry["since"]) - entry["since"]) // 1000
        phases.append({"name": p, "status": status, "duration_ms": duration})
    return {"completion_pct": round(pct, 1), "milestones_completed": len(state["milestones"]),
            "milestones_total": state["milestones_total"], "eta_minutes": eta,
            "current_phase": state["phase"], "phases": phases}


def _timeline(state: State) -> dict[str, Any]:
    agents = []
    for name, a in sorted(state["agents"].items(), key=lambda kv: kv[1]["start"]):
        status = a["status"]
        if status == "active" and (state["last_ts"] or 0) - a["last"] > IDLE_AFTER_US:
            status = "idle"
        agents.append({"agent": name, "status": status, "start_time": a["start"],
                       "active_ms": a["active_ms"], "idle_ms": a["idle_ms"],
                       "tasks_completed": a["tasks_completed"], "current_task": a["current_task"],
                       "parent": a["parent"]})
    return {"agents": agents}


def heat(last_ts: int, now_ts: int, writes: int) -> float:
    """Recency-weighted heat in [0, 1]: halves every 10 minutes without a write, and a
    directory with more writes saturates faster: (1 - 0.5**writes) * 0.5**(age / half-life)."""
    age = max(0, now_ts - last_ts)
    return round(float((1 - 0.5 ** writes) * 0.5 ** (age / HEAT_HALF_LIFE_US)), 4)


def _heatmap(state: State) -> dict[str, Any]:
    now = state["last_ts"] or 0
    dirs = [{"directory": d, "files_modified": len(v["files"]), "lines_added": v["lines_added"],
             "lines_removed": v["lines_removed"], "heat": heat(v["last_ts"], now, v["writes"])}
            for d, v in state["dirs"].items()]
    return {"directories": sorted(dirs, key=lambda x: (-x["heat"], x["directory"]))}


def _errors(state: State) -> dict[str, Any]:
    errs = []
    n_open = 0
    for e in reversed(state["errors"]):
        shown = e.copy()  # a copy without the key keeps the other fields in their order
        shown.pop("key", None)
        errs.append(shown)
        n_open += e["status"] == "open"
    return {"errors": errs, "open": n_open}


def _resources(state: State) -> dict[str, Any]:
    res = state["resources"]
    last = res["series"][-1] if res["series"] else {}
    limit = res.get("memory_limit_mib")
    mem = last.get("memory_mib")
    return {"memory_mib": mem, "cpu_pct": last.get("cpu_pct"),
            "peak_memory_mib": res["peak_memory_mib"], "peak_cpu_pct": res["peak_cpu_pct"],
            "memory_limit_mib": limit, "cpu_limit_pct": res.get("cpu_limit_pct"),
            "memory_utilisation": round(mem / limit, 4) if mem and limit else None,
            "series": res["series"]}


def _network(state: State) -> dict[str, Any]:
    net = state["network"]
    return {"recent": list(reversed(net["recent"])),
            "by_domain": [{"domain": d, **v} for d, v in sorted(net["domains"].items())]}


def _cost(state: State) -> dict[str, Any]:
    cost = state["cost"]
    estimate = (cost["cpu_ms"] / 3_600_000) * CPU_HOUR_USD + (
        cost["mem_mib_ms"] / 1024 / 3_600_000) * GIB_HOUR_USD
    return {"total_usd": round(cost["total_usd"], 6),
            "by_model": [{"model": m, **v} for m, v in sorted(cost["models"].items())],
            "by_agent": [{"agent": a, "cost_usd": round(v, 6)}
                         for a, v in sorted(cost["agents"].items())],
            "resource_estimate_usd": round(estimate, 6)}


def _summary(state: State) -> dict[str, Any]:
    return {"status": state["status"], "counts": dict(state["counts"]),
            "events": state["events"], "started_at": state["first_ts"],
            "last_event": state["last_event"],
            "agents": sorted(state["agents"]), "user_id": state.get("user_id")}


_RENDERERS = {
    "session_progress": _progress, "agent_timeline": _timeline, "file_heatmap": _heatmap,
    "error_log": _errors, "resource_usage": _resources, "network_trace": _network,
    "cost": _cost, "session_summary": _summary,
}
