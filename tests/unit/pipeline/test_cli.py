from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import COMMANDS, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_module_exposes_configure_and_run() -> None:
    import importlib

    for ref in COMMANDS.values():
        module = importlib.import_module(ref.module)
        assert callable(module.configure) and callable(module.run), ref.module


def test_configuration_error_is_a_message_not_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "topics"],
        env={"AGENTWATCH_TOPICS__PARTITIONS": "zero", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "AGENTWATCH_TOPICS__PARTITIONS" in proc.stderr
    assert "Traceback" not in proc.stderr
