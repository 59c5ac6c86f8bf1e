"""A simulated host for the sampler's unit tests: processes that burn CPU, grow, exit and are
reaped the way the kernel accounts it (a parent's children_* times gain what it reaps)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from producers.sampler.source import Connection, CpuTimes, Identity, Sample

MIB = 1024 * 1024


@dataclass
class FakeProc:
    pid: int
    ppid: int
    name: str
    create_time: float
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    user: float = 0.0
    system: float = 0.0
    children_user: float = 0.0
    children_system: float = 0.0
    rss: int = 4 * MIB
    hwm: int = 4 * MIB
    conns: list[Connection] = field(default_factory=list)


class FakeHost:
    def __init__(self, now: float = 1_700_000_000.0, *, cpus: int = 2,
                 exposes_peak: bool = True, counts_children: bool = True) -> None:
        self.now = now
        self.cpus = cpus
        self.exposes_peak = exposes_peak
        self.counts_children = counts_children
        self.procs: dict[int, FakeProc] = {1: FakeProc(1, 0, "init", now - 1000, ("init",), "/", {})}
        self._next = 100
        self.connection_calls = 0
        self.refreshes: list[bool] = []

    def spawn(self, ppid: int, name: str, argv: tuple[str, ...] = (), *, cwd: str = "/",
              env: dict[str, str] | None = None, rss: int = 4 * MIB) -> int:
        pid = self._next
        self._next += 1
        self.procs[pid] = FakeProc(pid, ppid, name, self.now, argv or (name,), cwd, env or {},
                                   rss=rss, hwm=rss)
        return pid

    def burn(self, pid: int, user: float, system: float = 0.0) -> None:
        proc = self.procs[pid]
        proc.user += user
        proc.system += system

    def grow(self, pid: int, rss: int) -> None:
        proc = self.procs[pid]
        proc.rss = rss
        proc.hwm = max(proc.hwm, rss)

    def exit(self, pid: int) -> None:
        """The process ends and its parent waits for it at once."""
        proc = self.procs.pop(pid)
        parent = self.procs.get(proc.ppid)
        if parent is not None and self.counts_children:
            parent.children_user += proc.user + proc.children_user
            parent.children_system += proc.system + proc.children_system
        for child in self.procs.values():
            if child.ppid == pid:
                child.ppid = 1

    def source(self) -> FakeSource:
        return FakeSource(self)


class FakeSource:
    def __init__(self, host: FakeHost) -> None:
        self.host = host

    def pids(self) -> Collection[int]:
        return list(self.host.procs)

    def identify(self, pid: int) -> Identity | None:
        p = self.host.procs.get(pid)
        return Identity(pid, p.ppid, p.create_time, p.name) if p else None

    def cmdline(self, pid: int) -> tuple[str, ...] | None:
        p = self.host.procs.get(pid)
        return p.argv if p else None

    def cwd(self, pid: int) -> str | None:
        p = self.host.procs.get(pid)
        return p.cwd if p else None

    def environ(self, pid: int, names: Collection[str]) -> dict[str, str] | None:
        p = self.host.procs.get(pid)
        return {k: v for k, v in p.env.items() if k in names} if p else None

    def sample(self, pid: int, *, peak: bool = False) -> Sample | None:
        p = self.host.procs.get(pid)
        if p is None:
            return None
        return Sample(p.ppid, CpuTimes(p.user, p.system, p.children_user, p.children_system),
                      p.rss, p.hwm if self.host.exposes_peak and peak else None)

    def connections(self, pids: Collection[int], *, refresh: bool = False
                    ) -> dict[int, list[Connection]] | None:
        self.host.connection_calls += 1
        self.host.refreshes.append(refresh)
        return {pid: list(p.conns) for pid in pids if (p := self.host.procs.get(pid)) and p.conns}

    def forget(self, pid: int) -> None:
        return None

    def cpu_count(self) -> int:
        return self.host.cpus

    def memory_total_bytes(self) -> int | None:
        return 16 * 1024 * MIB
