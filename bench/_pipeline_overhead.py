"""Agent overhead of bench/whole_pipeline.py: what the hooks add to one tool call of the agent.

Claude Code runs a PreToolUse hook before a tool and a PostToolUse hook after it and waits for
each (a command hook until it exits, an HTTP hook until the POST is answered), so one tool call
costs two hook invocations of wall time on the agent's path. Measured against the private
collector while the pipeline is idle:

- command hook as install-hooks writes it: ``python -S producers/hook_cmd.py`` with the hook JSON
  on stdin; wall time per run and its CPU (user + system, from wait4: load does not inflate it);
- HTTP hook: one POST of the same JSON to ``/hooks`` on a kept-alive connection (what Claude
  Code's HTTP hooks do), round-trip wall time, and the collector's CPU per hook.

The share of a tool call's duration is reported for a table of durations and for a "typical"
one taken from the repository's data (``typical_tool_call``), not invented.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from _pipeline_stack import Component

from pipeline.settings import REPO_ROOT

HOOK_SCRIPT = REPO_ROOT / "producers" / "hook_cmd.py"
FIXTURE = REPO_ROOT / "tests" / "data" / "claude_code_hooks.json"
DURATIONS_S = (0.1, 0.5, 1.0, 2.0, 5.0, 30.0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def typical_tool_call() -> dict[str, Any]:
    """The median of the tool-call durations in the repository's Claude Code hook payloads.

    The repository holds no measured tool-call durations (no real transcript; the simulator
    paces by rate, not by tool duration). The only Claude Code-shaped records that carry one are
    the PostToolUse payloads of tests/data/claude_code_hooks.json (``duration_ms``, or the tool
    response's ``durationMs`` / ``durationSeconds`` / ``totalDurationMs``): a handful of examples,
    so the median is a placeholder of the right order, which is why the table is printed too.
    """
    found: list[tuple[str, float]] = []
    for hook in json.loads(FIXTURE.read_text()).values():
        if hook.get("hook_event_name") != "PostToolUse":
            continue
        resp = hook.get("tool_response") if isinstance(hook.get("tool_response"), dict) else {}
        ms = hook.get("duration_ms") or resp.get("durationMs") or resp.get("totalDurationMs")
        if ms is None and resp.get("durationSeconds") is not None:
            ms = float(resp["durationSeconds"]) * 1000
        if ms is not None:
            found.append((str(hook.get("tool_name")), float(ms) / 1000))
    seconds = statistics.median(s for _, s in found)
    return {"seconds": seconds, "source": str(FIXTURE.relative_to(REPO_ROOT)),
            "rule": "median of the PostToolUse durations found there",
            "samples": {tool: s for tool, s in sorted(found, key=lambda x: x[1])}}


def pair_bodies(session: str, k: int) -> tuple[bytes, bytes]:
    """A PreToolUse and its PostToolUse (the fixture's Bash pytest call), one tool_use_id."""
    hooks = json.loads(FIXTURE.read_text())
    pre, post = copy.deepcopy(hooks["pre_bash"]), copy.deepcopy(hooks["post_bash_test"])
    for body in (pre, post):
        body["session_id"] = session
        body["tool_use_id"] = f"toolu_bench_{k:06d}"
    return json.dumps(pre).encode(), json.dumps(post).encode()


def run_command(argv: list[str], body: bytes, env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one run, the CPU from the child's own rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None
    proc.stdin.write(body)
    proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def command_hook(collector: Component, pairs: int, session: str) -> dict[str, Any]:
    argv = [sys.executable, "-S", str(HOOK_SCRIPT)]
    env = collector.env
    for k in range(3):  # warm the page cache
        run_command(argv, pair_bodies(session, k)[0], env)
    walls, cpus, pair_wall, pair_cpu = [], [], [], []
    for k in range(pairs):
        pre, post = pair_bodies(session, 1000 + k)
        (w1, c1), (w2, c2) = run_command(argv, pre, env), run_command(argv, post, env)
        walls += [w1, w2]
        cpus += [c1, c2]
        pair_wall.append(w1 + w2)
        pair_cpu.append(c1 + c2)
    floor = [run_command([sys.executable, "-S", "-c", "pass"], b"", env)
             for _ in range(max(10, pairs // 4))]
    return {"invocation": summary(walls, cpus), "tool_call": summary(pair_wall, pair_cpu),
            "bare_python_start": summary([w for w, _ in floor], [c for _, c in floor])}


def http_hook(collector: Component, pairs: int, session: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
    headers = {"Content-Type": "application/json"}

    def post(body: bytes) -> float:
        t0 = time.perf_counter()
        conn.request("POST", "/hooks", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        wall = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"collector answered {resp.status} to a hook")
        return wall

    try:
        for k in range(5):
            post(pair_bodies(session, 5000 + k)[0])
        walls, pair_wall = [], []
        cpu0 = collector.cpu_s()
        for k in range(pairs):
            pre, post_body = pair_bodies(session, 6000 + k)
            w1, w2 = post(pre), post(post_body)
            walls += [w1, w2]
            pair_wall.append(w1 + w2)
        collector_cpu = (collector.cpu_s() - cpu0) / (2 * pairs)
    finally:
        conn.close()
    return {"invocation": summary(walls, None), "tool_call": summary(pair_wall, None),
            "collector_cpu_ms_per_hook": round(collector_cpu * 1000, 3)}


def summary(walls: list[float], cpus: list[float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(walls), "wall_ms_p50": round(pct(walls, 0.5) * 1000, 2),
                           "wall_ms_p99": round(pct(walls, 0.99) * 1000, 2),
                           "wall_ms_mean": round(statistics.fmean(walls) * 1000, 2)}
    if cpus:
        out.update({"cpu_ms_p50": round(pct(cpus, 0.5) * 1000, 2),
                    "cpu_ms_p99": round(pct(cpus, 0.99) * 1000, 2)})
    return out


def shares(tool_call: dict[str, Any], typical_s: float) -> dict[str, dict[str, str]]:
    """Hook cost per tool call as a share of the tool call's duration, for each duration."""
    def fmt(ms: float, seconds: float) -> str:
        return f"{ms / 1000 / seconds * 100:.2f}%"

    out: dict[str, dict[str, str]] = {}
    for seconds in sorted({*DURATIONS_S, typical_s}):
        label = f"{seconds:g} s" + (" (typical)" if seconds == typical_s else "")
        row = {"wall_p50": fmt(tool_call["wall_ms_p50"], seconds),
               "wall_p99": fmt(tool_call["wall_ms_p99"], seconds)}
        if "cpu_ms_p50" in tool_call:
            row["cpu_p50"] = fmt(tool_call["cpu_ms_p50"], seconds)
        out[label] = row
    return out


def measure(collector: Component, pairs: int, log: Callable[[str], None]) -> dict[str, Any]:
    typical = typical_tool_call()
    session = f"bench-overhead-{os.getpid()}"
    log(f"agent overhead: {pairs} Pre+Post pairs per hook kind, load average "
        f"{os.getloadavg()[0]:.2f}")
    cmd = command_hook(collector, pairs, session)
    web = http_hook(collector, pairs, session)
    return {"typical_tool_call": typical, "load_average_1m": round(os.getloadavg()[0], 2),
            "command_hook": {**cmd, "share_of_tool_call": shares(cmd["tool_call"],
                                                                 typical["seconds"])},
            "http_hook": {**web, "share_of_tool_call": shares(web["tool_call"],
                                                              typical["seconds"])}}
