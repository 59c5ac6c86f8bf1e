"""The sampler's events make the dashboard's resource_usage and network_trace widgets show real
data: the events of a simulated session go through redaction (as the worker does) and the pure
widget reducers, and the rendered widgets are checked."""

from __future__ import annotations

from typing import Any

import pytest
from fake_host import MIB
from test_sampler_core import COMMAND, World, bash, shell_argv

from pipeline.redaction import Redactor
from processors.widgets.reducers import apply, new_state, render
from producers.sampler.source import Connection


def session_events() -> list[dict[str, Any]]:
    w = World()
    w.tick()
    for step in range(5):
        w.host.burn(w.agent, 0.2 * step)
        w.host.grow(w.agent, (300 + 20 * step) * MIB)
        w.tick()
    call = bash(w.host, command=f"curl -s https://pypi.org/simple/ && {COMMAND}")
    shell = w.host.spawn(w.agent, "bash", shell_argv(call.command or ""))
    child = w.host.spawn(shell, "python", ("python", "-c", "x = bytearray(200 << 20)"))
    w.host.procs[child].conns = [Connection("31", "10.1.2.3", 443, 41000, "ESTABLISHED", 10, 10)]
    w.tick(0.1, full=False, calls=(call,))
    w.host.grow(child, 200 * MIB)
    w.host.burn(child, 1.5, 0.3)
    w.tick(1.0, calls=(call,))
    w.host.procs[child].conns = [Connection("31", "10.1.2.3", 443, 41000, "ESTABLISHED",
                                            4000, 120_000)]
    w.tick(0.5, calls=(call,))  # bytes are read at full ticks (Linux: from tcp_info)
    w.host.exit(child)
    w.host.exit(shell)
    w.tick(0.5)
    return w.events


def test_resource_usage_and_network_trace_render_the_sampled_session() -> None:
    redactor = Redactor()
    state = new_state("9f1c2f0e-6a43-4a8e-9a51-2d7c1b7f0a11")
    changed: set[str] = set()
    for event in session_events():
        changed |= apply(state, redactor.redact_event(event))
    assert {"resource_usage", "network_trace", "cost"} <= changed

    res = render(state, "resource_usage")
    assert len(res["series"]) >= 6
    assert res["series"][0]["memory_mib"] == pytest.approx(300.0)
    assert res["peak_memory_mib"] >= 500.0  # the agent plus the command's 200 MiB
    assert res["peak_cpu_pct"] > 0 and res["cpu_limit_pct"] == 200.0
    assert res["memory_limit_mib"] == 16384.0 and 0 < res["memory_utilisation"] < 1

    net = render(state, "network_trace")
    domains = {d["domain"]: d for d in net["by_domain"]}
    assert "pypi.org" in domains  # named by the command line
    # The connection's private address was redacted by the pipeline, bytes still add up.
    [private] = [d for name, d in domains.items() if "10.1.2.3" not in name and name != "pypi.org"]
    assert private == {"domain": private["domain"], "requests": 1, "bytes": 124_000}
    assert all("10.1.2.3" not in str(r) for r in net["recent"])

    summary = render(state, "session_summary")
    assert summary["counts"]["commands"] == 0  # command.resources is no command run by itself
    assert render(state, "cost")["resource_estimate_usd"] > 0
