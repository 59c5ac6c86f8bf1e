"""Detached processes tracked by pid files, so `agentwatch down` can stop exactly what `up` started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ManagedProcess:
    """One long-running process of the local stack: its pid file and its log file."""

    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded pid if that process is still alive (and not a zombie), else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            # A recycled pid belongs to a process started after our pid file was written.
            if proc.create_time() > self.pid_file.stat().st_mtime + 5:
                return None
        except (psutil.NoSuchProcess, FileNotFoundError):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Start argv in its own session (survives the CLI, gets its own process group).

        posix_spawn rather than Popen: the process outlives this object by design, and no Popen
        is left behind to complain about it.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(self.log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        cmd = list(argv)
        if cwd is not None:
            # posix_spawn gained a chdir action only in Python 3.13: let sh change directory.
            cmd = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *cmd]
        pid = os.posix_spawnp(
            cmd[0], cmd, dict(env) if env is not None else dict(os.environ),
            file_actions=actions, setsid=True,
        )
        self.pid_file.write_text(f"{pid}\n")
        return pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM the process group, wait, then SIGKILL. Returns True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        _signal_group(pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        if alive:
            _signal_group(pid, signal.SIGKILL)
            for proc in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(alive, timeout=5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for(predicate: object, timeout_s: float, interval_s: float = 0.25) -> bool:
    """Poll a zero-argument callable until it returns truthy or the timeout passes."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
