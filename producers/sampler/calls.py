"""Bash tool calls: which new child of an agent runs which call, and what its tree used.

Claude Code runs every Bash command in a fresh shell, a direct child of the agent process, whose
argument vector carries the command text (``bash -c ... eval '<command>' ...``). A new child born
after a call's PreToolUse is matched to the in-flight call whose command words it contains
(several calls may run at once); with no command text to compare, a lone in-flight call takes a
lone new shell. Hooks the agent runs (``agentwatch hook``) are never taken for a call. From then
on every descendant of the matched child belongs to the call's ledger.

A call is finished when the collector stops listing it (its PostToolUse arrived) and none of its
processes is left; a background command still running ``max_track_s`` after that is reported
with what was measured and no longer followed.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from producers.sampler import domains
from producers.sampler.ledger import Ledger
from producers.sampler.table import Proc, ProcessTable, ProcKey
from producers.sampler.view import CallInfo

SHELLS = frozenset({"sh", "bash", "zsh", "dash", "fish", "ksh", "mksh", "ash"})
MATCH_SCORE = 0.6
BIRTH_SLACK_S = 2.0
CANDIDATE_PATIENCE_S = 30.0
ORPHAN_WAIT_S = 60.0
_TOKEN = re.compile(r"[^\s'\"\\;&|<>()`$]+")
_MAX_TOKENS = 64


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text)[:_MAX_TOKENS])


def match_score(command: str, argv: tuple[str, ...]) -> float:
    """Share of the command's words found in the process's arguments (quoting ignored)."""
    wanted = _tokens(command)
    if not wanted:
        return 0.0
    return len(wanted & _tokens(" ".join(argv))) / len(wanted)


@dataclass
class TrackedCall:
    call: CallInfo
    agent: ProcKey
    ledger: Ledger
    tops: dict[ProcKey, Proc] = field(default_factory=dict)
    cwd: str | None = None
    accesses: list[domains.Access] = field(default_factory=list)
    fresh: list[domains.Access] = field(default_factory=list)
    """Accesses found since the last ``drain_accesses``."""
    ended_at: float | None = None
    dead_since: float | None = None


@dataclass(frozen=True, slots=True)
class FinishedCall:
    call: CallInfo
    cpu_user_s: float
    cpu_system_s: float
    peak_rss_bytes: int
    duration_s: float | None
    processes: int
    complete: bool
    exact_peak: bool
    cwd: str | None
    accesses: tuple[domains.Access, ...]
    top_name: str


class CallTracker:
    def __init__(self, table: ProcessTable, *, exclude: Iterable[str] = (),
                 max_track_s: float = 3600.0) -> None:
        self.table = table
        self.exclude = tuple(exclude)
        self.max_track_s = max_track_s
        self.tracked: dict[str, TrackedCall] = {}
        self._done: deque[str] = deque(maxlen=4096)
        self._done_set: set[str] = set()
        self._claimed: dict[ProcKey, str] = {}
        self._unmatched: dict[ProcKey, float] = {}
        self._listed: set[str] = set()
        self._announced: dict[str, set[str]] = {}
        self.unseen = 0

    # -- matching --------------------------------------------------------------------------

    def candidates(self, agent: Proc, calls: list[CallInfo], now: float) -> list[Proc]:
        """New children of the agent that could run a call and are not yet taken."""
        if not calls:
            return []
        earliest = min(c.started_us for c in calls) / 1e6 - BIRTH_SLACK_S
        out = []
        for pid in agent.children:
            child = self.table.procs.get(pid)
            if child is None or child.key in self._claimed or child.create_time < earliest:
                continue
            first = self._unmatched.setdefault(child.key, now)
            if now - first > CANDIDATE_PATIENCE_S:
                continue
            out.append(child)
        return out

    def attribute(self, agent: Proc, calls: list[CallInfo], now: float) -> list[TrackedCall]:
        """Match new children of ``agent`` to ``calls`` (in flight, of the agent's session or
        of no other agent's); returns the calls that got a process this time."""
        open_calls = [c for c in calls if c.tool_use_id not in self._done_set]
        matched: list[TrackedCall] = []
        for child in self.candidates(agent, open_calls, now):
            argv = self.table.cmdline(child)
            text = " ".join(argv)
            if not argv or any(p in text for p in self.exclude):
                self._claimed[child.key] = ""  # never a call
                continue
            born = [c for c in open_calls if child.create_time >= c.started_us / 1e6 - BIRTH_SLACK_S]
            scored = [(match_score(c.command, argv), c) for c in born if c.command]
            best = max(scored, key=lambda sc: sc[0], default=None)
            call: CallInfo | None = None
            if best is not None and best[0] >= MATCH_SCORE:
                call = best[1]
            elif len(born) == 1 and born[0].command is None and child.name in SHELLS:
                call = born[0]
            if call is None:
                continue
            tracked = self._track(call, agent, child)
            matched.append(tracked)
        return matched

    def _track(self, call: CallInfo, agent: Proc, top: Proc) -> TrackedCall:
        tracked = self.tracked.get(call.tool_use_id)
        if tracked is None:
            tracked = self.tracked[call.tool_use_id] = TrackedCall(
                call, agent.key, Ledger(call.started_us / 1e6, peaks=True))
            tracked.cwd = self.table.source.cwd(top.pid)
            if call.command:
                self._merge(tracked, domains.from_command(call.command, tracked.cwd))
        tracked.tops[top.key] = top
        self._claimed[top.key] = call.tool_use_id
        self._unmatched.pop(top.key, None)
        tracked.ledger.add(top)
        return tracked

    def grow(self) -> list[Proc]:
        """Add new descendants of every call's processes to its ledger; returns the newcomers."""
        added = []
        for tracked in self.tracked.values():
            for top in list(tracked.tops.values()):
                if not top.alive:
                    continue
                for proc in self.table.descendants(top.pid):
                    if tracked.ledger.add(proc):
                        self._claimed[proc.key] = tracked.call.tool_use_id
                        added.append(proc)
                        argv = self.table.cmdline(proc)
                        self._merge(tracked, domains.from_argv(argv, tracked.cwd))
        return added

    def _merge(self, tracked: TrackedCall, found: list[domains.Access]) -> None:
        announced = self._announced.setdefault(tracked.call.tool_use_id, set())
        known = {a.domain for a in tracked.accesses}
        for access in found:
            if access.domain not in known:
                known.add(access.domain)
                tracked.accesses.append(access)
            if access.domain not in announced:
                announced.add(access.domain)
                tracked.fresh.append(access)

    def announce(self, call: CallInfo, cwd: str | None) -> list[domains.Access]:
        """Hosts a call's command text names, the first time the call is seen (matched to a
        process or not: short commands often end between two samples)."""
        if call.tool_use_id in self._announced or call.tool_use_id in self._done_set:
            return []
        found = domains.from_command(call.command, cwd) if call.command else []
        self._announced[call.tool_use_id] = {a.domain for a in found}
        return found

    def note_connection(self, tool_use_id: str, protocol: str, address: str) -> None:
        """A connection seen in a call's tree: the call contacted it (no event of its own here,
        the connection has one)."""
        tracked = self.tracked.get(tool_use_id)
        if tracked is not None and address not in {a.domain for a in tracked.accesses}:
            tracked.accesses.append(domains.Access(protocol, address, "connection", ""))

    def drain_accesses(self) -> list[tuple[TrackedCall, domains.Access]]:
        out = [(t, a) for t in self.tracked.values() for a in t.fresh]
        for tracked in self.tracked.values():
            tracked.fresh = []
        return out

    def owner(self, key: ProcKey) -> str | None:
        """The tool_use_id whose tree holds this process, if any."""
        return self._claimed.get(key) or None

    def live_processes(self) -> list[Proc]:
        return [p for t in self.tracked.values() for p in t.ledger.alive()]

    # -- ending ----------------------------------------------------------------------------

    def update_listing(self, in_flight: dict[str, CallInfo], now: float) -> None:
        """Calls the collector no longer lists have ended (their PostToolUse came); calls that
        ended, or waited too long, without a process of theirs seen are given up."""
        for tool_use_id, tracked in self.tracked.items():
            if tool_use_id not in in_flight and tracked.ended_at is None:
                tracked.ended_at = now
        for tool_use_id in self._listed - in_flight.keys():
            if tool_use_id not in self.tracked and tool_use_id not in self._done_set:
                self._give_up(tool_use_id)
        for tool_use_id, call in in_flight.items():
            if tool_use_id not in self.tracked and tool_use_id not in self._done_set \
                    and now - call.started_us / 1e6 > CANDIDATE_PATIENCE_S + BIRTH_SLACK_S:
                self._give_up(tool_use_id)
        self._listed = set(in_flight)

    def _give_up(self, tool_use_id: str) -> None:
        self._remember_done(tool_use_id)
        self._announced.pop(tool_use_id, None)
        self.unseen += 1

    def _remember_done(self, tool_use_id: str) -> None:
        if len(self._done) == self._done.maxlen:
            self._done_set.discard(self._done[0])
        self._done.append(tool_use_id)
        self._done_set.add(tool_use_id)

    def finished(self, now: float) -> list[FinishedCall]:
        """Calls to report now (their ledgers' CPU must be settled for this tick)."""
        out = []
        for tool_use_id, tracked in list(self.tracked.items()):
            alive = tracked.ledger.alive()
            if alive:
                tracked.dead_since = None
            elif tracked.dead_since is None:
                tracked.dead_since = now
            ended = tracked.ended_at is not None
            if ended and not alive:
                complete = True
            elif ended and now - (tracked.ended_at or now) > self.max_track_s:
                complete = False
            elif not alive and now - (tracked.dead_since or now) > ORPHAN_WAIT_S:
                complete = True  # the PostToolUse never came, the processes are long gone
            else:
                continue
            out.append(self._report(tracked, now, complete))
            del self.tracked[tool_use_id]
            self._announced.pop(tool_use_id, None)
            self._remember_done(tool_use_id)
            for key in [k for k, v in self._claimed.items() if v == tool_use_id]:
                self._claimed[key] = ""
        # Forget processes that are gone (their keys are never seen again).
        live = {p.key for p in self.table.procs.values()}
        self._claimed = {k: v for k, v in self._claimed.items() if k in live or v}
        self._unmatched = {k: t for k, t in self._unmatched.items() if k in live}
        return out

    def _report(self, tracked: TrackedCall, now: float, complete: bool) -> FinishedCall:
        ledger = tracked.ledger
        user, system = ledger.cpu()
        end = ledger.last_alive if complete and ledger.last_alive is not None else now
        duration = end - ledger.first_birth if ledger.first_birth is not None else None
        top = next(iter(tracked.tops.values()))
        return FinishedCall(
            tracked.call, user, system, ledger.peak_rss, max(0.0, duration) if duration else None,
            ledger.seen, complete, ledger.exact_peak, tracked.cwd, tuple(tracked.accesses),
            top.name)
