"""The host's process table, kept up to date incrementally, and what each watched process used.

Listing every process's parent with psutil costs ~10 ms per pass here, too much once a second.
So the table lists pids (one directory read), identifies only new ones, and re-reads the parent
only of processes whose parent went away (they were re-parented). Only watched processes are
sampled (CPU times, RSS, peak RSS).

CPU of exited processes. A sample misses what a process used after it: its last slice, and all
of a child that lived between two samples. The parent's ``children_*`` times (what its waited-
for children used, as the kernel accounts it) close the gap: when a watched child disappears and
its parent, sampled before and after, gained at least what the child had used, the child was
reaped by it. If it was the only watched child that disappeared, the parent's gain is the child's
exact final total (minus any unwatched sibling reaped in the same interval, bounded by the wall
time since the child's last sample). ``Proc.final_user/final_system`` hold the result;
``Proc.absorbed_by`` names the parent whose counters now include it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from producers.sampler.source import CpuTimes, ProcessSource, Sample

ProcKey = tuple[int, float]
"""(pid, create_time): pids are reused, the pair is not."""

_EPSILON_S = 0.02  # two clock ticks of CPU accounting
_HISTORY = 32


@dataclass(slots=True)
class Proc:
    pid: int
    ppid: int
    create_time: float
    name: str
    first_seen: float
    cmdline: tuple[str, ...] | None = None
    cmdline_read: bool = False
    last: Sample | None = None
    last_t: float = 0.0
    prev: Sample | None = None
    prev_t: float = 0.0
    peak_rss: int = 0
    alive: bool = True
    gone_t: float | None = None
    absorbed_by: ProcKey | None = None
    final_user: float | None = None
    final_system: float | None = None
    children: set[int] = field(default_factory=set)
    want_peak: bool = False
    """Read the lifetime RSS peak too (a member of a Bash call's ledger)."""
    reaped: deque[tuple[float, float, float]] = field(
        default_factory=lambda: deque(maxlen=_HISTORY))
    """(time, children_user, children_system) of the recent samples, to bracket a child's exit."""
    absorbed: deque[tuple[float, float, float]] = field(
        default_factory=lambda: deque(maxlen=_HISTORY))
    """(settled at, user, system) of the children already accounted from the counters above."""

    @property
    def key(self) -> ProcKey:
        return (self.pid, self.create_time)

    def totals(self) -> tuple[float, float]:
        """(user, system) seconds of this process and its reaped children, as far as known."""
        if self.final_user is not None and self.final_system is not None:
            return self.final_user, self.final_system
        cpu = self.last.cpu if self.last is not None else CpuTimes()
        return cpu.total_user, cpu.total_system


class ProcessTable:
    def __init__(self, source: ProcessSource) -> None:
        self.source = source
        self.procs: dict[int, Proc] = {}
        self.cpu_count = max(1, source.cpu_count())

    # -- structure -------------------------------------------------------------------------

    def refresh(self, now: float) -> tuple[list[Proc], list[Proc]]:
        """List the host's processes: (new ones, ones that went away)."""
        current = set(self.source.pids())
        gone = [p for pid, p in self.procs.items() if pid not in current]
        for proc in gone:
            self._remove(proc, now)
        new = []
        for pid in current - self.procs.keys():
            ident = self.source.identify(pid)
            if ident is None:
                continue
            proc = Proc(pid, ident.ppid, ident.create_time, ident.name, now)
            self.procs[pid] = proc
            new.append(proc)
        for proc in new:
            parent = self.procs.get(proc.ppid)
            if parent is not None:
                parent.children.add(proc.pid)
        # Orphans were re-parented (to init or a subreaper): ask who their parent is now.
        for proc in gone:
            for child_pid in proc.children:
                child = self.procs.get(child_pid)
                ident = self.source.identify(child_pid) if child is not None else None
                if child is not None and ident is not None:
                    child.ppid = ident.ppid
                    parent = self.procs.get(ident.ppid)
                    if parent is not None:
                        parent.children.add(child_pid)
        return new, gone

    def _remove(self, proc: Proc, now: float) -> None:
        self.procs.pop(proc.pid, None)
        parent = self.procs.get(proc.ppid)
        if parent is not None:
            parent.children.discard(proc.pid)
        proc.alive = False
        proc.gone_t = now
        self.source.forget(proc.pid)

    def descendants(self, pid: int) -> list[Proc]:
        out: list[Proc] = []
        stack = list(self.procs[pid].children) if pid in self.procs else []
        while stack:
            proc = self.procs.get(stack.pop())
            if proc is not None:
                out.append(proc)
                stack.extend(proc.children)
        return out

    def cmdline(self, proc: Proc) -> tuple[str, ...]:
        if not proc.cmdline_read:
            proc.cmdline = self.source.cmdline(proc.pid) if proc.alive else None
            proc.cmdline_read = proc.cmdline is not None
        return proc.cmdline or ()

    # -- measuring -------------------------------------------------------------------------

    def sample(self, procs: Iterable[Proc], now: float) -> list[Proc]:
        """Sample the given live processes; returns the ones found gone (removed from the table).

        Callers then call ``settle`` with everything that went away this tick (here and in
        ``refresh``), once the parents have their fresh samples.
        """
        vanished = []
        for proc in procs:
            if not proc.alive:
                continue
            sample = self.source.sample(proc.pid, peak=proc.want_peak)
            if sample is None:
                self._remove(proc, now)
                vanished.append(proc)
                continue
            proc.prev, proc.prev_t = proc.last, proc.last_t
            proc.last, proc.last_t = sample, now
            proc.reaped.append((now, sample.cpu.children_user, sample.cpu.children_system))
            proc.peak_rss = max(proc.peak_rss, sample.rss_bytes, sample.peak_rss_bytes or 0)
            if sample.ppid != proc.ppid:
                old = self.procs.get(proc.ppid)
                if old is not None:
                    old.children.discard(proc.pid)
                proc.ppid = sample.ppid
                new_parent = self.procs.get(sample.ppid)
                if new_parent is not None:
                    new_parent.children.add(proc.pid)
        return vanished

    def settle(self, vanished: Iterable[Proc], now: float) -> None:
        """Final CPU totals of processes that went away, from their parents' reaped counters.

        Processes that went away together form families under their topmost member, whose
        parent (alive, and sampled this tick: the caller samples the parents of what vanished)
        reaped the whole family if its children counters gained at least what the family had
        been seen using. Then every member is absorbed by its parent, and a lone family's top
        gets the parent's whole gain (its last slice and its descendants' too), bounded by what
        the wall time since its last sample allows.
        """
        gone = {p.pid: p for p in vanished
                if p.last is not None and p.absorbed_by is None and p.final_user is None}
        families: dict[int, list[Proc]] = {}
        for proc in gone.values():
            top, hops = proc, 0
            while top.ppid in gone and hops < 64:
                top, hops = gone[top.ppid], hops + 1
            families.setdefault(top.pid, []).append(proc)
        by_parent: dict[int, list[int]] = {}
        for top_pid in families:
            by_parent.setdefault(gone[top_pid].ppid, []).append(top_pid)
        for ppid, tops in by_parent.items():
            parent = self.procs.get(ppid)
            if parent is None or parent.last is None or parent.last_t < now:
                continue
            members = [m for t in tops for m in families[t]]
            since = min(m.last_t for m in members)
            before = next((h for h in reversed(parent.reaped) if h[0] <= since), None)
            if before is None:
                continue  # the parent's counters do not bracket the exits
            # Children settled since ``before`` were reaped inside this window too, and are
            # already accounted: their share of the gain is not this family's.
            earlier = [a for a in parent.absorbed if a[0] > before[0]]
            gained = (parent.last.cpu.children_user - before[1] - sum(a[1] for a in earlier),
                      parent.last.cpu.children_system - before[2] - sum(a[2] for a in earlier))
            seen = (sum(m.totals()[0] for m in members), sum(m.totals()[1] for m in members))
            if sum(gained) < sum(seen) - _EPSILON_S * len(members):
                continue  # not reaped by it (auto-reaped, or the platform keeps no such counter)
            for top_pid in tops:
                top = gone[top_pid]
                family = families[top_pid]
                user = sum(m.totals()[0] for m in family)
                system = sum(m.totals()[1] for m in family)
                if len(tops) == 1:
                    room = max(0.0, now - since) * self.cpu_count
                    user += min(max(0.0, gained[0] - user), room)
                    system += min(max(0.0, gained[1] - system), room)
                for member in family:
                    member.absorbed_by = parent.key if member is top else gone[member.ppid].key
                top.final_user, top.final_system = user, system
                parent.absorbed.append((now, user, system))
