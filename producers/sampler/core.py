"""The sampling core: one ``tick`` turns a look at the host's processes into events.

A full tick (every ``interval_s``) lists processes, finds agents (by name, or by an interpreter's
script argument), samples every process of their trees, emits one ``resource.sample`` per agent
whose session is known, and looks at the trees' TCP connections. While a Bash call's processes
run, fast ticks (every ``command_interval_s``) sample only those processes, their parents and
siblings, so a command's CPU and memory are seen closely without sampling everything often.
No I/O besides the process source: the caller fetches the collector's view and publishes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producers.sampler import events
from producers.sampler.calls import CallTracker
from producers.sampler.ledger import Ledger
from producers.sampler.network import NetworkTracker, Owner
from producers.sampler.resolve import Evidence, resolve
from producers.sampler.source import ProcessSource
from producers.sampler.table import Proc, ProcessTable, ProcKey
from producers.sampler.view import ActiveView, CallInfo

SESSION_ENV = ("CLAUDE_CODE_SESSION_ID", "AGENTWATCH_SESSION_ID")
_INTERPRETERS = ("node", "bun", "deno", "python")
CLAUDE_AGENT = "claude-code"


@dataclass(frozen=True)
class SamplerConfig:
    process_names: tuple[str, ...] = ("claude",)
    cmdline_patterns: tuple[str, ...] = ("@anthropic-ai/claude-code", "claude-code/cli.js")
    exclude_patterns: tuple[str, ...] = ("agentwatch hook",)
    claude_dir: Path | None = None
    network: bool = True
    include_loopback: bool = False
    bytes_every_s: float = 30.0
    max_track_s: float = 3600.0
    agent_name: str = CLAUDE_AGENT


@dataclass
class Agent:
    proc: Proc
    name: str
    evidence: Evidence
    ledger: Ledger
    session_id: str | None = None
    last_cpu: tuple[float, float] | None = None
    last_t: float = 0.0


@dataclass
class Stats:
    ticks: int = 0
    full_ticks: int = 0
    events: dict[str, int] = field(default_factory=dict)
    agents: int = 0
    agents_resolved: int = 0

    def count(self, produced: Iterable[dict[str, Any]]) -> None:
        for event in produced:
            self.events[event["event_type"]] = self.events.get(event["event_type"], 0) + 1


class Sampler:
    def __init__(self, source: ProcessSource, config: SamplerConfig | None = None) -> None:
        self.source = source
        self.config = config or SamplerConfig()
        self.table = ProcessTable(source)
        self.calls = CallTracker(self.table, exclude=self.config.exclude_patterns,
                                 max_track_s=self.config.max_track_s)
        self.net = NetworkTracker(include_loopback=self.config.include_loopback,
                                  bytes_every_s=self.config.bytes_every_s)
        self.agents: dict[ProcKey, Agent] = {}
        self.view: ActiveView | None = None
        self.stats = Stats()
        self.memory_total = source.memory_total_bytes()
        self.cpu_limit_pct = float(self.table.cpu_count * 100)
        self._own_pid = os.getpid()
        self._pending: list[dict[str, Any]] = []
        self._gone: list[Proc] = []
        self._want_view = True

    # -- the collector's view ----------------------------------------------------------------

    def set_view(self, view: ActiveView, now: float) -> None:
        """A fresh answer of the collector: sessions, and the Bash calls now in flight."""
        self.view = view
        self._want_view = False
        in_flight = view.bash_calls()
        self.calls.update_listing(in_flight, now)
        for call in in_flight.values():
            session = view.session(call.session_id)
            for found in self.calls.announce(call, session.cwd if session else None):
                self._pending.append(events.access(found, call.session_id, call.tool_use_id,
                                                   self.config.agent_name, int(now * 1e6)))

    def view_unavailable(self) -> None:
        """The collector did not answer: keep the last view, ask again at the next interval."""
        self._want_view = False

    def wants_view(self) -> bool:
        """True when a new child of an agent waits to be matched to a call: ask the collector
        now rather than at the next interval (short commands end quickly)."""
        return self._want_view

    def busy(self) -> bool:
        """Whether fast ticks are needed: a call's processes are running."""
        return bool(self.calls.live_processes())

    # -- one tick --------------------------------------------------------------------------

    def tick(self, now: float, *, full: bool) -> list[dict[str, Any]]:
        self.observe(now)
        return self.measure(now, full=full)

    def observe(self, now: float) -> None:
        """First half of a tick: list processes, find agents, learn from their new children.
        A caller that can reach the collector asks it for a fresh view when ``wants_view`` says
        so before ``measure``: a new shell is then matched to its call in the same tick."""
        new, gone = self.table.refresh(now)
        self._gone += gone
        self._discover(new, now)
        self._learn_from_children(new)

    def measure(self, now: float, *, full: bool) -> list[dict[str, Any]]:
        """Second half: sessions, calls, samples, and the events they make."""
        self.stats.ticks += 1
        gone, self._gone = self._gone, []
        self._resolve()
        self._attribute(now)
        self.calls.grow()
        if full:
            for agent in self.agents.values():
                if agent.proc.alive:
                    agent.ledger.add(agent.proc)
                    for proc in self.table.descendants(agent.proc.pid):
                        agent.ledger.add(proc)
        vanished = self.table.sample(self._sample_set(full), now)
        exited = gone + vanished
        parents = {p.ppid for p in exited}
        self.table.sample([p for pid in parents if (p := self.table.procs.get(pid)) is not None],
                          now)
        self.table.settle(exited, now)
        for tracked in self.calls.tracked.values():
            tracked.ledger.observe_memory(now)
        out, self._pending = self._pending, []
        ts_us = int(now * 1e6)
        for done in self.calls.finished(now):
            agent_name = self._agent_name_for(done.call.session_id)
            out.append(events.command_resources(done, agent_name, ts_us))
        for tracked, found in self.calls.drain_accesses():
            out.append(events.access(found, tracked.call.session_id, tracked.call.tool_use_id,
                                     self._agent_name_for(tracked.call.session_id), ts_us))
        if full:
            self.stats.full_ticks += 1
            out += self._resource_samples(now)
            if self.config.network:
                out += self._connections(now)
        self._forget_dead_agents()
        self.stats.count(out)
        return out

    # -- agents and sessions ----------------------------------------------------------------

    def _is_agent(self, proc: Proc) -> str | None:
        if proc.pid == self._own_pid:
            return None
        if proc.name in self.config.process_names:
            return CLAUDE_AGENT if proc.name == "claude" else self.config.agent_name
        if self.config.cmdline_patterns and proc.name.startswith(_INTERPRETERS):
            script = next((a for a in self.table.cmdline(proc)[1:] if not a.startswith("-")), "")
            if any(p in script for p in self.config.cmdline_patterns):
                return self.config.agent_name
        return None

    def _inside_agent(self, proc: Proc) -> bool:
        seen = 0
        ppid = proc.ppid
        while ppid > 1 and seen < 64:
            parent = self.table.procs.get(ppid)
            if parent is None:
                return False
            if parent.key in self.agents:
                return True
            ppid, seen = parent.ppid, seen + 1
        return False

    def _discover(self, new: list[Proc], now: float) -> None:
        # Parents first, so an agent started by an agent stays inside the first one's tree.
        for proc in sorted(new, key=lambda p: p.create_time):
            name = self._is_agent(proc)
            if name is None or self._inside_agent(proc):
                continue
            ev = Evidence(cwd=self.source.cwd(proc.pid),
                          pidfile_session=self._pidfile_session(proc.pid))
            env = self.source.environ(proc.pid, SESSION_ENV) or {}
            sid = env.get("AGENTWATCH_SESSION_ID") or env.get("CLAUDE_CODE_SESSION_ID")
            if sid:
                ev.env_session = (sid, proc.create_time)
            self.agents[proc.key] = Agent(proc, name, ev, Ledger(now))
            self._want_view = True

    def _pidfile_session(self, pid: int) -> str | None:
        folder = self.config.claude_dir or Path.home() / ".claude"
        try:
            doc = json.loads((folder / "sessions" / f"{pid}.json").read_text())
        except (OSError, ValueError):
            return None
        sid = doc.get("sessionId") if isinstance(doc, dict) else None
        return sid if isinstance(sid, str) and sid else None

    def _learn_from_children(self, new: list[Proc]) -> None:
        for proc in new:
            parent = self.table.procs.get(proc.ppid)
            agent = self.agents.get(parent.key) if parent is not None else None
            if agent is None:
                continue
            self._want_view = True
            env = self.source.environ(proc.pid, SESSION_ENV) or {}
            sid = env.get("CLAUDE_CODE_SESSION_ID") or env.get("AGENTWATCH_SESSION_ID")
            if sid:
                current = agent.evidence.env_session
                if current is None or current[1] <= proc.create_time:
                    agent.evidence.env_session = (sid, proc.create_time)

    def _resolve(self) -> None:
        assigned = resolve({k: a.evidence for k, a in self.agents.items()}, self.view)
        for key, agent in self.agents.items():
            agent.session_id = assigned.get(key)
        self.stats.agents = len(self.agents)
        self.stats.agents_resolved = sum(1 for a in self.agents.values() if a.session_id)

    def _attribute(self, now: float) -> None:
        if self.view is None:
            return
        calls = list(self.view.bash_calls().values())
        if not calls:
            return
        held = {a.session_id for a in self.agents.values() if a.session_id}
        for agent in self.agents.values():
            if not agent.proc.alive or not agent.proc.children:
                continue
            mine: list[CallInfo] = [c for c in calls if c.session_id == agent.session_id
                                    or c.session_id not in held]
            for tracked in self.calls.attribute(agent.proc, mine, now):
                agent.evidence.call_session = (tracked.call.session_id, now)

    def _agent_name_for(self, session_id: str) -> str:
        for agent in self.agents.values():
            if agent.session_id == session_id:
                return agent.name
        return self.config.agent_name

    def _forget_dead_agents(self) -> None:
        for key in [k for k, a in self.agents.items() if not a.proc.alive]:
            del self.agents[key]

    # -- measuring -------------------------------------------------------------------------

    def _sample_set(self, full: bool) -> list[Proc]:
        if full:
            procs: dict[ProcKey, Proc] = {}
            for agent in self.agents.values():
                for proc in agent.ledger.alive():
                    procs[proc.key] = proc
            for proc in self.calls.live_processes():
                procs[proc.key] = proc
            return list(procs.values())
        # Fast: a call's processes and their parents, whose counters bracket their exits (see
        # table.settle; other children of those parents are settled at the next full tick).
        chosen: dict[ProcKey, Proc] = {}
        for proc in self.calls.live_processes():
            chosen[proc.key] = proc
            parent = self.table.procs.get(proc.ppid)
            if parent is not None:
                chosen[parent.key] = parent
        return list(chosen.values())

    def _resource_samples(self, now: float) -> list[dict[str, Any]]:
        out = []
        for agent in self.agents.values():
            if not agent.proc.alive:
                continue
            rss = agent.ledger.observe_memory(now)
            user, system = agent.ledger.cpu()
            previous, previous_t = agent.last_cpu, agent.last_t
            agent.last_cpu, agent.last_t = (user, system), now
            if agent.session_id is None or previous is None or now <= previous_t:
                continue
            used = (user + system) - (previous[0] + previous[1])
            out.append(events.resource_sample(
                agent.session_id, agent.name, int(now * 1e6), rss_bytes=rss,
                cpu_pct=100.0 * used / (now - previous_t), memory_limit_bytes=self.memory_total,
                cpu_limit_pct=self.cpu_limit_pct, processes=len(agent.ledger.alive()),
                pid=agent.proc.pid))
        return out

    def _connections(self, now: float) -> list[dict[str, Any]]:
        owners: dict[int, Owner] = {}
        for agent in self.agents.values():
            if agent.session_id is None:
                continue
            for proc in agent.ledger.alive():
                owners[proc.pid] = Owner(agent.session_id, proc.name,
                                         self.calls.owner(proc.key))
        if not owners and not self.net.open:
            return []
        conns = self.source.connections(list(owners), refresh=self.net.bytes_due(now))
        if conns is None:
            return []
        ts_us = int(now * 1e6)
        names = {a.session_id: a.name for a in self.agents.values() if a.session_id}
        out = []
        for ev in self.net.observe(conns, owners, now):
            if ev.kind == "request" and ev.owner.tool_use_id:
                self.calls.note_connection(ev.owner.tool_use_id, ev.protocol, ev.remote_ip)
            out.append(events.connection(
                ev, names.get(ev.owner.session_id, self.config.agent_name), ts_us))
        return out
