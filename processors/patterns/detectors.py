"""Failure-pattern detectors: pure functions over one session's state and one event.

Each detector keeps its own slice of a JSON-able per-session state dict (stored in a Faust table
keyed by session_id) and returns alerts. Windows are event-time and kept inside that state as
bounded lists pruned by the event's timestamp, rather than in Faust windowed tables: Faust expires
windows on wall clock and does not expire windows recovered from a changelog, which could lose or
repeat an alert after a restart. Here a restart recovers exactly the state that produced the
last alert, so replaying the same events yields the same alerts (ids are derived from evidence),
and every condition fires once, then stays quiet until it clears.
"""

from __future__ import annotations

import itertools
import operator
import statistics
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.model import (
    BUILD_EVENT,
    COMMAND_EVENT,
    FILE_EVENT,
    LLM_REQUEST,
    TEST_EVENT,
    Severity,
    Source,
)

State = dict[str, Any]
Event = dict[str, Any]
Alert = dict[str, Any]

_ALERT_NS = uuid.UUID("5b0a2f0e-7d51-4f5e-9a1b-4b1f6c3a9e10")
MINUTE_US = 60_000_000
CODE_CHANGES = ("file.write", "file.delete")
"""Event types after which a changed outcome or a repeated failure is a fix attempt."""

COMPILERS = frozenset({
    "gcc", "g++", "cc", "c++", "clang", "clang++", "rustc", "javac", "kotlinc", "tsc", "erlc",
    "scalac", "swiftc", "ghc", "nim", "zig",
})
BUILD_SUBCOMMANDS = {
    "cargo": {"build", "check", "b"}, "go": {"build", "vet"}, "rebar3": {"compile"},
    "mvn": {"compile", "package"}, "gradle": {"build", "compileJava", "assemble"},
    "npm": {"run build", "build"}, "dotnet": {"build"}, "make": {""}, "ninja": {""},
    "cmake": {"--build"}, "mix": {"compile"}, "dune": {"build"},
}

MITIGATIONS = {
    "compile_fix_loop": "The agent is cycling on compile errors: pause it, read the first error "
    "yourself, and give it the fix or a narrower task; check it has the right toolchain version.",
    "flaky_test": "The test changes outcome without code changes: quarantine it, look for shared "
    "state, ordering, time or network dependence, and stop the agent from 'fixing' code for it.",
    "memory_growth": "Peak memory rises on every run of the same command: look for a leak or an "
    "unbounded cache in the code under test; cap the process memory before it hits the host.",
    "slow_test": "This run took more than twice the suite's median: check for a hang, a retry "
    "loop, or a heavier fixture; run the suite alone to compare.",
    "stalled_session": "No progress for several minutes: the agent may be waiting for input, "
    "stuck on a permission prompt, or hung in a tool; look at its terminal.",
    "retry_storm": "The same command keeps failing unchanged: stop the agent and give it the "
    "error's cause; repeated identical retries waste tokens and time.",
    "cost_spike": "Token spend is running above the configured rate: check for a loop that re-"
    "reads large files or a runaway subagent; consider a smaller model for this task.",
}


@dataclass(frozen=True)
class PatternConfig:
    """Thresholds; the worker builds this from settings."""

    compile_errors: int = 3
    """More than this many compile errors in the window fires compile_fix_loop."""
    compile_window_us: int = 5 * MINUTE_US
    memory_growth_pct: float = 20.0
    memory_growth_runs: int = 3
    slow_test_factor: float = 2.0
    slow_test_min_samples: int = 5
    slow_test_history: int = 50
    stall_after_us: int = 5 * MINUTE_US
    retry_storm_failures: int = 3
    cost_usd_per_hour: float = 20.0
    cost_window_us: int = 15 * MINUTE_US
    evidence_limit: int = 20


def alert_id(session_id: str, pattern: str, key: str) -> str:
    """Deterministic: reprocessing the same events after a restart yields the same id."""
    return str(uuid.uuid5(_ALERT_NS, f"{session_id}|{pattern}|{key}"))


def _make_alert(
    event: Event, pattern: str, key: str, severity: Severity, message: str, *,
    window_start: int, evidence: Iterable[str], cfg: PatternConfig,
) -> Alert:
    ids = list(evidence)[-cfg.evidence_limit:]
    return {
        "alert_id": alert_id(event["session_id"], pattern, key),
        "pattern": pattern,
        "session_id": event["session_id"],
        "agent": event.get("agent") or "unknown",
        "severity": severity.value,
        "window_start": window_start,
        "window_end": event["timestamp"],
        "evidence_event_ids": ids,
        "message": message,
        "suggested_mitigation": MITIGATIONS[pattern],
        "detected_at": event["timestamp"],
    }


def _payload(event: Event) -> tuple[str, dict[str, Any]]:
    name, body = event.get("payload") or ("", {})
    return name, body


def command_key(body: dict[str, Any]) -> str:
    return " ".join([str(body.get("binary") or ""), *[str(a) for a in body.get("args") or []]])


def is_compile(event: Event) -> bool | None:
    """True for a failed compile, False for a successful one, None for anything else."""
    name, body = _payload(event)
    if name == BUILD_EVENT:
        return body.get("outcome") not in ("success", "succeeded", "passed")
    if name != COMMAND_EVENT or body.get("exit_code") is None:
        return None
    binary = str(body.get("binary") or "").rsplit("/", 1)[-1]
    args = [str(a) for a in body.get("args") or []]
    compiling = binary in COMPILERS
    if binary in BUILD_SUBCOMMANDS:
        subs = BUILD_SUBCOMMANDS[binary]
        compiling = "" in subs or bool(args and (args[0] in subs or " ".join(args[:2]) in subs))
    if not compiling:
        return None
    return bool(body["exit_code"] != 0)


# -- detectors ----------------------------------------------------------------------------
Detector = Callable[[State, Event, PatternConfig], list[Alert]]


def compile_fix_loop(state: State, event: Event, cfg: PatternConfig) -> list[Alert]:
    outcome = is_compile(event)
    if outcome is None:
        return []
    st = state.setdefault("compile", {"errors": [], "active": False})
    ts = event["timestamp"]
    if not outcome:
        st["errors"], st["active"] = [], False
        return []
    # A failed build run through a tool arrives twice (command.executed and build.completed,
    # same tool_use_id): it is one compile error.
    call = event.get("tool_use_id") or event["event_id"]
    if any(len(e) > 2 and e[2] == call for e in st["errors"]):
        return []
    st["errors"].append([ts, event["event_id"], call])
    st["errors"] = [e for e in st["errors"] if e[0] > ts - cfg.compile_window_us]
    if len(st["errors"]) <= cfg.compile_errors:
        st["active"] = False
        return []
    if st["active"]:
        return []
    st["active"] = True
    first = st["errors"][0]
    return [_make_alert(
        event, "compile_fix_loop", first[1], Severity.WARNING,
        f"{len(st['errors'])} compile errors within "
        f"{cfg.compile_window_us // MINUTE_US} minutes",
        window_start=first[0], evidence=(e[1] for e in st["errors"]), cfg=cfg)]


def flaky_test(state: State, event: Event, cfg: PatternConfig) -> list[Alert]:
    name, body = _payload(event)
    st = state.get("flaky")
    if st is None:
        st = state["flaky"] = {"epoch": 0, "tests": {}}
    if event.get("event_type") in CODE_CHANGES:
        # Any code change explains a changed outcome: the history restarts.
        st["epoch"] += 1
        return []
    if name != TEST_EVENT:
        return []
    outcome = body.get("outcome")
    if outcome not in ("passed", "failed"):
        return []
    key = f"{body.get('suite')}::{body.get('test_name')}"
    hist = st["tests"].setdefault(key, {"epoch": st["epoch"], "runs": [], "alerted": False})
    if hist["epoch"] != st["epoch"]:
        hist.update(epoch=st["epoch"], runs=[], alerted=False)
    hist["runs"] = [*hist["runs"], [outcome, event["event_id"], event["timestamp"]]][-3:]
    outcomes = [r[0] for r in hist["runs"]]
    alternating = len(outcomes) == 3 and outcomes[0] == outcomes[2] != outcomes[1]
    if not alternating or hist["alerted"]:
        return []
    hist["alerted"] = True
    return [_make_alert(
        event, "flaky_test", f"{key}|{hist['runs'][0][1]}", Severity.WARNING,
        f"test {key} went {' -> '.join(outcomes)} with no file change in between",
        window_start=hist["runs"][0][2], evidence=(r[1] for r in hist["runs"]), cfg=cfg)]


def memory_growth(state: State, event: Event, cfg: PatternConfig) -> list[Alert]:
    name, body = _payload(event)
    peak = body.get("peak_memory_mib") if name == COMMAND_EVENT else None
    if peak is None:
        return []
    st = state.setdefault("memory", {})
    key = command_key(body)
    runs = st.setdefault(key, {"runs": [], "alerted": False})
    runs["runs"] = [*runs["runs"], [float(peak), event["event_id"], event["timestamp"]]]
    runs["runs"] = runs["runs"][-cfg.memory_growth_runs:]
    series = runs["runs"]
    factor = 1 + cfg.memory_growth_pct / 100
    growing = len(series) >= cfg.memory_growth_runs and all(
        b[0] > a[0] * factor for a, b in itertools.pairwise(series))
    if not growing:
        runs["alerted"] = False
        return []
    if runs["alerted"]:
        return []
    runs["alerted"] = True
    return [_make_alert(
        event, "memory_growth", f"{key}|{series[0][1]}", Severity.WARNING,
        f"peak memory of `{key}` grew more than {cfg.memory_growth_pct:g}% per run over "
        f"{len(series)} runs: " + ", ".join(f"{r[0]:.0f}" for r in series) + " MiB",
        window_start=series[0][2], evidence=(r[1] for r in series), cfg=cfg)]


def slow_test(state: State, event: Event, cfg: PatternConfig) -> list[Alert]:
    name, body = _payload(event)
    duration = body.get("duration_ms") if name == TEST_EVENT else None
    if duration is None:
        return []
    st = state.setdefault("slow", {})
    suite = st.setdefault(str(body.get("suite")), {"durations": [], "active": False})
    history = suite["durations"]
    alerts: list[Alert] = []
    if len(history) >= cfg.slow_test_min_samples:
        median = statistics.median(history)
        # A suite whose runs report 0 ms has no meaningful median to be slow against.
        if median > 0 and duration > cfg.slow_test_factor * median:
            if not suite["active"]:
                suite["active"] = True
                alerts.append(_make_alert(
                    event, "slow_test", event["event_id"], Severity.INFO,
                    f"{body.get('suite')}::{body.get('test_name')} took {duration} ms, "
                    f"{duration / median:.1f}x the suite median of {median:.0f} ms",
                    window_start=event["timestamp"], evidence=[event["event_id"]], cfg=cfg))
        else:
            suite["active"] = False
    suite["durations"] = [*history, duration][-cfg.slow_test_history:]
    return alerts


def retry_storm(state: State, event: Event, cfg: PatternConfig) -> list[Alert]:
    """Identical retries: a file change in between makes it a fix attempt, not a retry."""
    name, body = _payload(event)
    if event.get("event_type") in CODE_CHANGES:
        state["retry"] = {}
        return []
    if name != COMMAND_EVENT or body.get("exit_code") is None:
        return []
    st = state.setdefault("retry", {})
    key = command_key(body)
    entry = st.setdefault(key, {"failures": [], "alerted": False})
    if body["exit_code"] == 0:
        st.pop(key)
        return []
    entry["failures"] = [*entry["failures"], [event["event_id"], event["timestamp"]]][
        -cfg.evidence_limit:]
    if len(entry["failures"]) < cfg.retry_storm_failures or entry["alerted"]:
        return []
    entry["alerted"] = True
    first = entry["failures"][0]
    return [_make_alert(
        event, "retry_storm", f"{key}|{first[0]}", Severity.WARNING,
        f"`{key}` failed {len(entry['failures'])} times in a row",
        window_start=first[1], evidence=(f[0] for f in entry["failures"]), cfg=cfg)]


_COST = operator.itemgetter(1)


def _spend_sum(spend: list[list[Any]]) -> float:
    """What the detector has always summed. On 3.11 ``sum()`` adds floats left to right, as the
    running total does, so the two agree bit for bit (3.12's compensated ``sum()`` may differ in
    the last bit, which can only move a rate sitting exactly on the limit)."""
    total: float = sum(map(_COST, spend))
    return total


def _in_time_order(spend: list[list[Any]]) -> bool:
    return all(a[0] <= b[0] for a, b in itertools.pairwise(spend))


def cost_spike(state: State, event: Event, cfg: PatternConfig) -> list[Alert]:
    """Spend over the window, O(1) per LLM event while nothing expires.

    ``spend`` stays in arrival order (the alert's first entry and its evidence order come from
    it). While that is also time order (``ordered``, the usual case) the expired entries are a
    prefix and leave from the front; after an out-of-order arrival the whole list is filtered,
    as it always was, until the late entries have expired. ``sum`` is the costs of the kept
    entries added left to right: adding a cost keeps it exact, and when entries expire it is
    recomputed from the kept ones (one C-level pass; subtracting would drift), so the rate is
    bit for bit what summing the list gives. A state written before ``sum`` and ``ordered``
    existed gets them on its first event.
    """
    name, body = _payload(event)
    if name != LLM_REQUEST or not body.get("cost_usd"):
        return []
    st = state.setdefault("cost", {"spend": [], "active": False})
    spend: list[list[Any]] = st["spend"]
    total: float | None = st.get("sum")
    if total is None:
        total = _spend_sum(spend)
        st["ordered"] = _in_time_order(spend)
    ts = event["timestamp"]
    cutoff = ts - cfg.cost_window_us
    if st["ordered"]:
        expired = 0
        while expired < len(spend) and spend[expired][0] <= cutoff:
            expired += 1
        if expired:
            del spend[:expired]
            total = _spend_sum(spend)
    else:
        kept = [s for s in spend if s[0] > cutoff]
        if len(kept) < len(spend):
            spend[:] = kept
            total = _spend_sum(spend)
            st["ordered"] = _in_time_order(spend)
    if spend and ts < spend[-1][0]:
        st["ordered"] = False
    cost = float(body["cost_usd"])
    spend.append([ts, cost, event["event_id"]])
    total += cost
    st["sum"] = total
    # Rate over the whole window length, not the elapsed time: one expensive first request
    # does not extrapolate to a spike.
    rate = total * (3600_000_000 / cfg.cost_window_us)
    if rate <= cfg.cost_usd_per_hour:
        st["active"] = False
        return []
    if st["active"]:
        return []
    st["active"] = True
    return [_make_alert(
        event, "cost_spike", spend[0][2], Severity.WARNING,
        f"spending ${rate:.2f}/hour over the last {cfg.cost_window_us // MINUTE_US} minutes "
        f"(limit ${cfg.cost_usd_per_hour:.2f}/hour)",
        window_start=spend[0][0], evidence=(s[2] for s in spend), cfg=cfg)]


DETECTORS: tuple[Detector, ...] = (
    compile_fix_loop, flaky_test, memory_growth, slow_test, retry_storm, cost_spike,
)


def _only(*wanted: Detector) -> tuple[Detector, ...]:
    return tuple(d for d in DETECTORS if d in wanted)


_BY_PAYLOAD: dict[str, tuple[Detector, ...]] = {
    COMMAND_EVENT: _only(compile_fix_loop, flaky_test, memory_growth, retry_storm),
    BUILD_EVENT: _only(compile_fix_loop, flaky_test),
    TEST_EVENT: _only(flaky_test, slow_test),
    LLM_REQUEST: _only(flaky_test, cost_spike),
}
"""The detectors an event of this payload can affect; the others return [] untouched, so
``observe`` skips them (most events concern one detector at most). flaky_test runs on every
event: it creates its state on the first one, and a persisted state should not depend on this
table. A new detector must be listed here for the payloads it reads."""
_BY_PAYLOAD_ELSE = _only(flaky_test)
_ON_CODE_CHANGE: dict[str, tuple[Detector, ...]] = {FILE_EVENT: _only(flaky_test, retry_storm)}
"""file.write / file.delete reset flaky_test's and retry_storm's histories."""

PROGRESS_PREFIXES = ("agent.", "file.", "command.", "test.", "build.", "llm.", "user.")


def observe(state: State, event: Event, cfg: PatternConfig, now_us: int) -> list[Alert]:
    """Run every detector on one event; ``now_us`` is processing time, used for stalls only."""
    alerts: list[Alert] = []
    etype = event.get("event_type", "")
    name = _payload(event)[0]
    if etype in CODE_CHANGES:
        detectors = _ON_CODE_CHANGE.get(name, DETECTORS)
    else:
        detectors = _BY_PAYLOAD.get(name, _BY_PAYLOAD_ELSE)
    for detect in detectors:
        found = detect(state, event, cfg)
        if found:
            alerts.extend(found)
    record_liveness(state, event, now_us)
    return alerts


def record_liveness(state: State, event: Event, now_us: int) -> None:
    """What stalled_session's timer judges: the last progress, whether the session ended."""
    etype = event.get("event_type", "")
    live = state.get("live")
    if live is None:
        live = state["live"] = {"last_progress": 0, "stalled": False, "ended": False,
                                "source": "", "agent": "", "last_event_id": ""}
    live["source"] = event.get("source") or live["source"]
    live["agent"] = event.get("agent") or live["agent"]
    if etype == "session.ended":
        live["ended"] = True
    elif etype == "session.started":
        live["ended"] = False
    if etype.startswith(PROGRESS_PREFIXES) or etype == "session.started":
        live["last_progress"] = now_us
        live["stalled"] = False
        live["last_event_id"] = event["event_id"]


def check_stall(session_id: str, state: State, cfg: PatternConfig, now_us: int) -> list[Alert]:
    """Timer-driven: a live session with no progress for ``stall_after_us`` fires once.

    Processing time, not event time: a stall is about what is happening now. Backfilled
    transcripts are never live, so importing last month's sessions raises nothing.
    """
    live = state.get("live")
    if not live or live["ended"] or live["stalled"] or not live["last_progress"]:
        return []
    if live["source"] == Source.TRANSCRIPT.value:
        return []
    if now_us - live["last_progress"] < cfg.stall_after_us:
        return []
    live["stalled"] = True
    pseudo = {"session_id": session_id, "agent": live["agent"], "timestamp": now_us}
    minutes = (now_us - live["last_progress"]) / MINUTE_US
    return [_make_alert(
        pseudo, "stalled_session", f"{live['last_event_id']}|{live['last_progress']}",
        Severity.WARNING, f"no progress for {minutes:.1f} minutes",
        window_start=live["last_progress"],
        evidence=[live["last_event_id"]] if live["last_event_id"] else [], cfg=cfg)]
