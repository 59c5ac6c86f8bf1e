from __future__ import annotations

import sys
from pathlib import Path

import psutil

from pipeline.stack.process import ManagedProcess, wait_for


def test_start_records_pid_and_stop_kills_the_whole_group(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path / "run", tmp_path / "logs")
    # The parent spawns a child: `stop` must end both, as `agentwatch down` promises.
    code = (
        "import subprocess,sys,time;"
        "subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
        "print('up', flush=True); time.sleep(60)"
    )
    pid = proc.start([sys.executable, "-c", code])
    assert proc.pid() == pid
    assert wait_for(lambda: "up" in proc.log_tail(), 10)
    children = psutil.Process(pid).children(recursive=True)
    assert children
    assert proc.stop(timeout_s=10) is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert proc.pid() is None
    assert not proc.pid_file.exists()


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    proc = ManagedProcess("ghost", tmp_path / "run", tmp_path / "logs")
    proc.run_dir.mkdir(parents=True)
    proc.pid_file.write_text("999999999\n")
    assert proc.pid() is None
    assert proc.stop() is False


def test_kafka_cluster_ids_never_look_like_options() -> None:
    from pipeline.stack.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
