"""The psutil source on this machine: the Linux fast path and the portable psutil path agree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from producers.sampler.source import PsutilSource


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@pytest.mark.parametrize("portable", [False, True])
def test_identify_and_sample_this_process(portable: bool) -> None:
    source = PsutilSource()
    if portable:
        source._linux = False  # the path macOS takes
    me = source.identify(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.ppid == os.getppid()
    assert abs(me.create_time - __import__("psutil").Process().create_time()) < 1.0
    first = source.sample(os.getpid(), peak=True)
    burn(0.2)
    second = source.sample(os.getpid(), peak=True)
    assert first is not None and second is not None
    assert second.cpu.user + second.cpu.system >= first.cpu.user + first.cpu.system + 0.15
    assert second.rss_bytes > 10 * 1024 * 1024
    if portable or not sys.platform.startswith("linux"):
        assert second.peak_rss_bytes is None  # unavailable, not a crash
    else:
        assert second.peak_rss_bytes is not None and second.peak_rss_bytes >= second.rss_bytes
        assert source.sample(os.getpid()) is not None
        assert source.sample(os.getpid()).peak_rss_bytes is None  # type: ignore[union-attr]
    assert source.cmdline(os.getpid())
    assert source.cwd(os.getpid()) == os.getcwd()
    assert source.cpu_count() >= 1 and (source.memory_total_bytes() or 0) > 0


def test_children_times_and_environment_of_a_child() -> None:
    source = PsutilSource()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
        env={**os.environ, "CLAUDE_CODE_SESSION_ID": "s-42", "OTHER": "x"})
    try:
        assert source.environ(child.pid, ("CLAUDE_CODE_SESSION_ID", "MISSING")) == {
            "CLAUDE_CODE_SESSION_ID": "s-42"}
        ident = source.identify(child.pid)
        assert ident is not None and ident.ppid == os.getpid()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert source.sample(child.pid) is None  # gone and reaped
    mine = source.sample(os.getpid())
    assert mine is not None
    if sys.platform.startswith("linux"):
        assert mine.cpu.children_user + mine.cpu.children_system > 0  # the child's interpreter


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start ticks from /proc")
def test_a_reused_pid_is_not_taken_for_the_process_it_was() -> None:
    source = PsutilSource()
    assert source.identify(os.getpid()) is not None
    source._starts[os.getpid()] += 1  # as if the pid now named a newer process
    assert source.sample(os.getpid()) is None


def test_unknown_pids_are_none_everywhere() -> None:
    source = PsutilSource()
    pid = 2**22 + 4321
    assert source.identify(pid) is None and source.sample(pid) is None
    assert source.cmdline(pid) is None and source.cwd(pid) is None
    assert source.environ(pid, ("X",)) is None
    source.forget(pid)
