"""What a group of processes (an agent's tree, one Bash call's tree) used: CPU and memory.

A ledger's members only grow: a descendant seen once stays a member until it is gone, even if it
is re-parented (a server a command left running still belongs to the command). Processes born
after the ledger's start count whole; older ones count from their first sample. A member reaped
by a parent that is also a member is counted through the parent's ``children_*`` times (see
``producers.sampler.table``), never twice. Dead members are folded into a constant.
"""

from __future__ import annotations

from producers.sampler.table import Proc, ProcKey

_BIRTH_SLACK_S = 1.0  # process start times and hook times come from different clocks' reads


class Ledger:
    def __init__(self, start: float, *, peaks: bool = False) -> None:
        self.start = start
        self.peaks = peaks
        self.members: dict[ProcKey, Proc] = {}
        self._base: dict[ProcKey, tuple[float, float]] = {}
        self._retired = (0.0, 0.0)
        self.seen = 0
        self.rss_bytes = 0
        self.peak_sum_rss = 0
        self.peak_proc_rss = 0
        self.exact_peak = True
        self.first_birth: float | None = None
        self.last_alive: float | None = None

    def add(self, proc: Proc) -> bool:
        if proc.key in self.members or not proc.alive:
            return False
        self.members[proc.key] = proc
        self.seen += 1
        proc.want_peak = proc.want_peak or self.peaks
        if proc.create_time >= self.start - _BIRTH_SLACK_S:
            self._base[proc.key] = (0.0, 0.0)
            born = proc.create_time
            self.first_birth = born if self.first_birth is None else min(self.first_birth, born)
        return True

    def alive(self) -> list[Proc]:
        return [p for p in self.members.values() if p.alive]

    def cpu(self) -> tuple[float, float]:
        """(user, system) seconds used by the members since they joined (or were born).

        Call after the tick's exits were settled: a dead member's share is final then.
        """
        user, system = self._retired
        retire = []
        for key, proc in self.members.items():
            u = s = 0.0
            if proc.last is not None:
                base = self._base.get(key)
                if base is None:
                    base = self._base[key] = proc.totals()
                if not proc.alive and proc.absorbed_by in self.members:
                    u, s = -base[0], -base[1]
                else:
                    tu, ts = proc.totals()
                    u, s = tu - base[0], ts - base[1]
            user += u
            system += s
            if not proc.alive:
                retire.append((key, u, s))
        for key, u, s in retire:
            del self.members[key]
            self._base.pop(key, None)
            self._retired = (self._retired[0] + u, self._retired[1] + s)
        return max(0.0, user), max(0.0, system)

    def observe_memory(self, now: float) -> int:
        """Sum of the RSS of members sampled at ``now``; keeps the peaks."""
        total = 0
        for proc in self.members.values():
            if proc.alive and proc.last is not None and proc.last_t == now:
                total += proc.last.rss_bytes
                self.peak_proc_rss = max(self.peak_proc_rss, proc.peak_rss)
                if proc.last.peak_rss_bytes is None:
                    self.exact_peak = False
                self.last_alive = now
        self.rss_bytes = total
        self.peak_sum_rss = max(self.peak_sum_rss, total)
        return total

    @property
    def peak_rss(self) -> int:
        """The larger of the highest sampled sum and the highest single-process peak."""
        return max(self.peak_sum_rss, self.peak_proc_rss)
