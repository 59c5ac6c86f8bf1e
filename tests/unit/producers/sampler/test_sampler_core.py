"""The sampling core against a simulated host: agents, sessions, Bash calls, connections."""

from __future__ import annotations

from typing import Any

import pytest
from fake_host import MIB, FakeHost

from pipeline.serde import AvroSerde
from pipeline.validation import validate_event
from producers.sampler.core import Sampler, SamplerConfig
from producers.sampler.source import Connection
from producers.sampler.view import ActiveView, CallInfo, SessionInfo

SID = "9f1c2f0e-6a43-4a8e-9a51-2d7c1b7f0a11"
COMMAND = "python -c 'x = bytearray(200 << 20)'"
SERDE = AvroSerde()


def view(host: FakeHost, *calls: CallInfo, sid: str = SID, cwd: str = "/repo") -> ActiveView:
    us = int(host.now * 1e6)
    return ActiveView(us, (SessionInfo(sid, cwd, us - 60_000_000, us, tuple(calls)),))


def bash(host: FakeHost, tool_use_id: str = "toolu_1", command: str | None = COMMAND,
         sid: str = SID) -> CallInfo:
    return CallInfo(tool_use_id, sid, "Bash", int(host.now * 1e6), command)


def shell_argv(command: str) -> tuple[str, ...]:
    # What Claude Code runs for a Bash call (quoting differs; the words are what matter).
    return ("/bin/bash", "-c", "-l", f"source ~/.claude/shell-snapshots/s.sh && eval '{command}' "
            "< /dev/null && pwd -P >| /tmp/claude-1-cwd")


def by_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type]


def check(events: list[dict[str, Any]]) -> None:
    for event in events:
        validate_event(event, now_us=event["timestamp"])
        assert SERDE.decode_event(SERDE.encode_event(event)) == event


class World:
    def __init__(self, **host: Any) -> None:
        self.host = FakeHost(**host)
        self.agent = self.host.spawn(1, "claude", ("claude",), cwd="/repo", rss=300 * MIB)
        self.sampler = Sampler(self.host.source(), SamplerConfig(claude_dir=None))
        self.events: list[dict[str, Any]] = []

    def tick(self, dt: float = 1.0, *, full: bool = True, calls: tuple[CallInfo, ...] = (),
             with_view: bool = True) -> list[dict[str, Any]]:
        self.host.now += dt
        if with_view:
            self.sampler.set_view(view(self.host, *calls), self.host.now)
        out = self.sampler.tick(self.host.now, full=full)
        check(out)
        self.events += out
        return out


def test_resource_samples_follow_the_agent_tree_once_the_session_is_known() -> None:
    w = World()
    assert w.tick() == []  # first look: no rate yet
    w.host.burn(w.agent, 0.3, 0.1)
    mcp = w.host.spawn(w.agent, "node", ("node", "mcp-server.js"), rss=100 * MIB)
    w.host.burn(mcp, 0.1)
    [sample] = w.tick()
    assert sample["session_id"] == SID and sample["event_type"] == "resource.sample"
    assert sample["agent"] == "claude-code" and sample["metadata"]["producer"] == "sampler"
    body = sample["payload"][1]
    assert body["memory_mib"] == pytest.approx(400.0)
    assert body["cpu_pct"] == pytest.approx(50.0)  # 0.5 s of CPU in 1 s (the MCP server is new)
    assert body["cpu_limit_pct"] == 200.0 and body["memory_limit_mib"] == 16384.0


def test_a_bash_call_gets_its_peak_memory_and_cpu_through_its_tool_use_id() -> None:
    w = World()
    w.tick()
    call = bash(w.host)
    w.host.now += 0.05
    shell = w.host.spawn(w.agent, "bash", shell_argv(COMMAND),
                         env={"CLAUDE_CODE_SESSION_ID": SID})
    child = w.host.spawn(shell, "python", ("python", "-c", "x = bytearray(200 << 20)"))
    w.tick(0.1, full=False, calls=(call,))
    assert w.sampler.busy()
    w.host.grow(child, 212 * MIB)
    w.host.burn(child, 0.6, 0.1)
    w.tick(0.1, full=False, calls=(call,))
    w.host.burn(child, 0.4, 0.1)  # never sampled: it exits first
    w.host.exit(child)
    w.host.exit(shell)
    w.tick(0.2, full=False, calls=(call,))
    assert by_type(w.events, "command.resources") == []  # PostToolUse not in yet
    w.tick(0.1, full=False)  # the collector no longer lists the call
    [res] = by_type(w.events, "command.resources")
    assert res["tool_use_id"] == "toolu_1" and res["session_id"] == SID
    body = res["payload"][1]
    assert body["binary"] == "python" and body["args"] == ["-c", "x = bytearray(200 << 20)"]
    assert body["exit_code"] is None and body["cwd"] == "/"
    assert body["cpu_user_ms"] == 1000 and body["cpu_system_ms"] == 200
    assert body["peak_memory_mib"] == pytest.approx(212 + 4)
    assert 200 <= body["duration_ms"] <= 500
    assert res["metadata"]["complete"] == "true" and res["metadata"]["peak"] == "lifetime"
    assert res["metadata"]["processes"] == "2"
    # Sent once: a later tick does not repeat it.
    w.tick()
    assert len(by_type(w.events, "command.resources")) == 1


def test_two_calls_at_once_are_told_apart_by_their_command_text() -> None:
    w = World()
    w.tick()
    a = bash(w.host, "toolu_a", "pytest -q tests/unit")
    b = bash(w.host, "toolu_b", "npm run build --prefix web")
    sa = w.host.spawn(w.agent, "bash", shell_argv(a.command or ""))
    sb = w.host.spawn(w.agent, "bash", shell_argv(b.command or ""))
    hook = w.host.spawn(w.agent, "sh", ("sh", "-c", "agentwatch hook"))
    w.tick(0.1, full=False, calls=(a, b))
    w.host.burn(sa, 0.3)
    w.host.burn(sb, 0.7)
    w.host.burn(hook, 5.0)
    w.tick(0.1, full=False, calls=(a, b))
    for pid in (sa, sb, hook):
        w.host.exit(pid)
    w.tick(0.1, full=False)
    got = {e["tool_use_id"]: e["payload"][1]["cpu_user_ms"]
           for e in by_type(w.events, "command.resources")}
    assert got == {"toolu_a": 300, "toolu_b": 700}


def test_without_command_text_a_lone_call_takes_a_lone_new_shell() -> None:
    w = World()
    w.tick()
    call = bash(w.host, command=None)
    shell = w.host.spawn(w.agent, "bash", ("bash",))
    w.tick(0.1, full=False, calls=(call,))
    w.host.burn(shell, 0.2)
    w.tick(0.1, full=False, calls=(call,))
    w.host.exit(shell)
    w.tick(0.1, full=False)
    [res] = by_type(w.events, "command.resources")
    assert res["payload"][1]["binary"] == "bash" and res["payload"][1]["cpu_user_ms"] == 200


def test_a_call_whose_processes_were_never_seen_is_given_up_quietly() -> None:
    w = World()
    w.tick()
    w.tick(0.1, calls=(bash(w.host),))
    w.tick(0.1)
    assert by_type(w.events, "command.resources") == []
    assert w.sampler.calls.unseen == 1


def test_a_background_server_is_reported_partially_after_the_limit() -> None:
    w = World()
    w.sampler.calls.max_track_s = 5.0
    w.tick()
    call = bash(w.host, command="python -m http.server 8000")
    server = w.host.spawn(w.agent, "python", ("python", "-m", "http.server", "8000"))
    w.tick(0.1, full=False, calls=(call,))
    w.host.burn(server, 0.1)
    w.tick(1.0)  # PostToolUse came (background call), the server keeps running
    assert by_type(w.events, "command.resources") == []
    w.tick(6.0)
    [res] = by_type(w.events, "command.resources")
    assert res["metadata"]["complete"] == "false"
    assert res["payload"][1]["cpu_user_ms"] == 100


def test_hosts_a_command_names_are_traced_when_the_call_is_first_seen() -> None:
    w = World()
    w.tick()
    call = bash(w.host, command="curl -fsS https://api.github.com/repos?token=x && pip install rich")
    w.tick(0.1, full=False, calls=(call,))
    found = by_type(w.events, "network.request")
    assert [(e["payload"][1]["domain"], e["metadata"]["via"]) for e in found] == [
        ("api.github.com", "url"), ("pypi.org", "registry"), ("files.pythonhosted.org", "registry")]
    assert {e["tool_use_id"] for e in found} == {"toolu_1"}
    assert all("token" not in str(e["payload"]) for e in found)
    w.tick(0.1, full=False, calls=(call,))
    assert len(by_type(w.events, "network.request")) == 3  # once per call


def test_connections_are_reported_once_with_bytes_when_they_close() -> None:
    w = World()
    w.tick()
    w.host.procs[w.agent].conns = [
        Connection("11", "160.79.104.10", 443, 51000, "ESTABLISHED", 100, 2000),
        Connection("12", "127.0.0.1", 4318, 51001, "ESTABLISHED", 10, 10),
    ]
    w.tick()
    [req] = by_type(w.events, "network.request")
    assert req["payload"][1] == {"protocol": "https", "domain": "160.79.104.10", "endpoint": None,
                                 "status_code": None, "bytes_sent": None, "bytes_received": None,
                                 "duration_ms": None}
    assert req["metadata"]["process"] == "claude" and req["metadata"]["remote_port"] == "443"
    w.host.procs[w.agent].conns = [
        Connection("11", "160.79.104.10", 443, 51000, "ESTABLISHED", 500, 9000)]
    w.tick()
    w.host.procs[w.agent].conns = []
    w.tick()
    [transfer] = by_type(w.events, "network.transfer")
    assert transfer["payload"][1]["bytes_sent"] == 500
    assert transfer["payload"][1]["bytes_received"] == 9000
    assert transfer["metadata"]["state"] == "closed"


def test_a_connection_inside_a_call_carries_its_tool_use_id() -> None:
    w = World()
    w.tick()
    call = bash(w.host, command="git push")
    shell = w.host.spawn(w.agent, "bash", shell_argv("git push"))
    git = w.host.spawn(shell, "git", ("git", "push"))
    w.host.procs[git].conns = [Connection("21", "140.82.112.3", 22, 40000, "ESTABLISHED")]
    w.tick(0.1, full=False, calls=(call,))
    w.tick(1.0, calls=(call,))
    [req] = [e for e in by_type(w.events, "network.request")
             if e["metadata"]["via"] == "connection"]
    assert req["tool_use_id"] == "toolu_1" and req["payload"][1]["protocol"] == "ssh"


def test_unresolved_agents_emit_nothing() -> None:
    w = World()
    w.host.procs[w.agent].cwd = "/elsewhere"
    w.tick()
    w.host.burn(w.agent, 1.0)
    assert w.tick() == []
    assert w.sampler.stats.agents == 1 and w.sampler.stats.agents_resolved == 0


def test_agents_inside_agents_and_the_sampler_itself_are_not_new_agents() -> None:
    w = World()
    w.host.spawn(w.agent, "claude", ("claude", "-p", "hi"))
    w.tick()
    assert len(w.sampler.agents) == 1


def test_npm_installed_claude_is_found_by_its_script() -> None:
    host = FakeHost()
    host.spawn(1, "node", ("node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"))
    host.spawn(1, "node", ("node", "server.js", "@anthropic-ai/claude-code"))
    sampler = Sampler(host.source())
    sampler.tick(host.now, full=True)
    assert [a.proc.name for a in sampler.agents.values()] == ["node"]
    assert [a.proc.pid for a in sampler.agents.values()] == [100]
