"""Where process facts come from: a small Protocol the sampling core reads, and its psutil version.

The core never imports psutil: unit tests drive it with a fake source. ``PsutilSource`` works
wherever psutil does (Linux, macOS); on Linux it adds what psutil leaves out or makes expensive:
the lifetime peak RSS (``VmHWM``), a socket lookup that does not re-read ``/proc/net/tcp`` on
every call, and one ``/proc/<pid>/stat`` read per sample (see ``producers.sampler.linux``).
A metric a platform does not expose is ``None``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import psutil

    from producers.sampler.linux import SocketTable


@dataclass(frozen=True, slots=True)
class Identity:
    pid: int
    ppid: int
    create_time: float
    """Seconds since the epoch (with the pid, a process's identity: pids are reused)."""
    name: str


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Seconds of CPU; ``children_*`` is what the process's waited-for children used (0 where the
    platform does not say, e.g. macOS)."""

    user: float = 0.0
    system: float = 0.0
    children_user: float = 0.0
    children_system: float = 0.0

    @property
    def total_user(self) -> float:
        return self.user + self.children_user

    @property
    def total_system(self) -> float:
        return self.system + self.children_system

    @property
    def reaped(self) -> float:
        return self.children_user + self.children_system

    @property
    def total(self) -> float:
        return self.user + self.system + self.children_user + self.children_system


@dataclass(frozen=True, slots=True)
class Sample:
    ppid: int
    cpu: CpuTimes
    rss_bytes: int
    peak_rss_bytes: int | None = None
    """The process's lifetime RSS high-water mark where the OS keeps one (Linux VmHWM)."""


@dataclass(frozen=True, slots=True)
class Connection:
    """One TCP socket of a process with a remote end."""

    key: str
    """Stable while the socket lives (the inode on Linux)."""
    remote_ip: str
    remote_port: int
    local_port: int
    status: str
    bytes_sent: int | None = None
    """Bytes the peer acknowledged so far, where the platform exposes it (Linux tcp_info)."""
    bytes_received: int | None = None


class ProcessSource(Protocol):
    def pids(self) -> Collection[int]: ...

    def identify(self, pid: int) -> Identity | None: ...

    def cmdline(self, pid: int) -> tuple[str, ...] | None: ...

    def cwd(self, pid: int) -> str | None: ...

    def environ(self, pid: int, names: Collection[str]) -> dict[str, str] | None:
        """The named variables of the process's initial environment (None: not readable)."""
        ...

    def sample(self, pid: int, *, peak: bool = False) -> Sample | None:
        """None when the process is gone (or no longer readable, or its pid was reused);
        ``peak`` asks for the lifetime RSS peak too, where the platform keeps one."""
        ...

    def connections(self, pids: Collection[int], *, refresh: bool = False
                    ) -> dict[int, list[Connection]] | None:
        """TCP connections per pid; None when unavailable here or skipped to stay within the
        sampler's CPU budget. ``refresh`` asks for fresh byte counts of known sockets too."""
        ...

    def forget(self, pid: int) -> None: ...

    def cpu_count(self) -> int: ...

    def memory_total_bytes(self) -> int | None: ...


def _quiet_errors() -> tuple[type[BaseException], ...]:
    import psutil

    return (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError)


class PsutilSource:
    """``ProcessSource`` over psutil; keeps one ``psutil.Process`` per live pid it was asked about."""

    def __init__(self, *, network_budget: float = 0.005) -> None:
        import psutil

        self._psutil = psutil
        self._errors = _quiet_errors()
        self._procs: dict[int, psutil.Process] = {}
        self._linux = sys.platform.startswith("linux")
        self._sockets: SocketTable | None = None
        self._budget = network_budget
        self._next_scan = 0.0
        self._starts: dict[int, int] = {}
        self._boot = 0.0
        if self._linux:
            from producers.sampler.linux import SocketTable

            self._sockets = SocketTable(budget=network_budget)
            self._boot = psutil.boot_time()

    def _proc(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = self._procs[pid] = self._psutil.Process(pid)
            except self._errors:
                return None
        return proc

    def pids(self) -> Collection[int]:
        return self._psutil.pids()

    def identify(self, pid: int) -> Identity | None:
        if self._linux:
            from producers.sampler.linux import CLOCK_TICKS, read_stat

            stat = read_stat(pid)
            if stat is None:
                return None
            self._starts[pid] = stat.start_ticks
            return Identity(pid, stat.ppid, self._boot + stat.start_ticks / CLOCK_TICKS,
                            stat.name)
        proc = self._proc(pid)
        if proc is None:
            return None
        try:
            with proc.oneshot():
                return Identity(pid, proc.ppid(), proc.create_time(), proc.name())
        except self._errors:
            self.forget(pid)
            return None

    def cmdline(self, pid: int) -> tuple[str, ...] | None:
        proc = self._proc(pid)
        try:
            return tuple(proc.cmdline()) if proc is not None else None
        except self._errors:
            return None

    def cwd(self, pid: int) -> str | None:
        proc = self._proc(pid)
        try:
            return proc.cwd() if proc is not None else None
        except self._errors:
            return None

    def environ(self, pid: int, names: Collection[str]) -> dict[str, str] | None:
        proc = self._proc(pid)
        try:
            env = proc.environ() if proc is not None else None
        except self._errors:
            return None
        return None if env is None else {k: env[k] for k in names if k in env}

    def sample(self, pid: int, *, peak: bool = False) -> Sample | None:
        if self._linux:
            return self._linux_sample(pid, peak)
        proc = self._proc(pid)
        if proc is None:
            return None
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                rss = proc.memory_info().rss
                ppid = proc.ppid()
        except self._errors:
            self.forget(pid)
            return None
        cpu = CpuTimes(times.user, times.system, getattr(times, "children_user", 0.0),
                       getattr(times, "children_system", 0.0))
        return Sample(ppid, cpu, rss, None)

    def _linux_sample(self, pid: int, peak: bool) -> Sample | None:
        from producers.sampler.linux import peak_rss_bytes, read_stat

        stat = read_stat(pid)
        known = self._starts.setdefault(pid, stat.start_ticks) if stat is not None else None
        if stat is None or known != stat.start_ticks:
            return None  # gone, or the pid now names another process
        cpu = CpuTimes(stat.user, stat.system, stat.children_user, stat.children_system)
        return Sample(stat.ppid, cpu, stat.rss_bytes, peak_rss_bytes(pid) if peak else None)

    def connections(self, pids: Collection[int], *, refresh: bool = False
                    ) -> dict[int, list[Connection]] | None:
        if self._sockets is not None:
            return self._sockets.connections(pids, refresh=refresh)
        return self._psutil_connections(pids)

    def _psutil_connections(self, pids: Collection[int]) -> dict[int, list[Connection]] | None:
        # psutil's per-process call is the portable path (macOS: libproc, cheap per process);
        # the same CPU budget as on Linux bounds how often it runs.
        now = time.monotonic()
        if now < self._next_scan:
            return None
        started = time.process_time()
        out: dict[int, list[Connection]] = {}
        for pid in pids:
            proc = self._proc(pid)
            if proc is None:
                continue
            try:
                conns = proc.net_connections(kind="tcp")
            except self._errors:
                continue
            found = []
            for c in conns:
                if not c.raddr or c.status in ("LISTEN", "TIME_WAIT", "CLOSE", "NONE"):
                    continue
                raddr, laddr = c.raddr, c.laddr
                key = f"{pid}:{c.fd}:{laddr.port}:{raddr.ip}:{raddr.port}"
                found.append(Connection(key, raddr.ip, raddr.port, laddr.port, str(c.status)))
            if found:
                out[pid] = found
        cost = time.process_time() - started
        self._next_scan = now + cost / self._budget
        return out

    def forget(self, pid: int) -> None:
        self._procs.pop(pid, None)
        self._starts.pop(pid, None)
        if self._sockets is not None:
            self._sockets.forget(pid)

    def cpu_count(self) -> int:
        return self._psutil.cpu_count() or 1

    def memory_total_bytes(self) -> int | None:
        try:
            return int(self._psutil.virtual_memory().total)
        except (OSError, RuntimeError):
            return None
