"""`agentwatch export-session` and `agentwatch replay --print` on a folder archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumers.archive.compaction import compact_session
from consumers.archive.jsonl import event_from_line, iter_events
from consumers.archive.segments import build_segments, write_segment
from consumers.archive.targets import FileTarget
from consumers.archive.testing import sample_session
from pipeline.cli import main

SID = "cli-session"


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    events = sample_session(SID, 30, span_s=60.0)
    target = FileTarget(tmp_path / "archive")
    for seg in build_segments(0, list(enumerate(events[:20]))):
        write_segment(target, seg)
    compact_session(target, SID)
    # The last ten are still pending segments: export and replay must include them.
    for seg in build_segments(0, [(20 + i, e) for i, e in enumerate(events[20:])]):
        write_segment(target, seg)
    monkeypatch.setenv("AGENTWATCH_ARCHIVE__TARGET", target.describe())
    return events


def test_export_session_writes_the_recording(archive: list[dict[str, Any]], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shared.jsonl.gz"
    assert main(["export-session", SID, "--out", str(out), "--no-clickhouse"]) == 0
    assert list(iter_events(out.read_bytes())) == archive
    assert "exported 30 events" in capsys.readouterr().err


def test_export_session_to_stdout(archive: list[dict[str, Any]],
                                  capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["export-session", SID, "--out", "-", "--no-clickhouse"]) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    assert [event_from_line(line) for line in lines] == archive


def test_unknown_session_is_an_error(archive: list[dict[str, Any]], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-session", "nope", "--out", str(tmp_path / "x"), "--no-clickhouse"]) == 2
    assert "no recording of session 'nope'" in capsys.readouterr().err


def test_replay_print_emits_marked_events_in_range(
    archive: list[dict[str, Any]], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["replay", SID, "--speed", "0", "--from", "+10s", "--to", "+40s", "--print",
                 "--no-clickhouse"]) == 0
    captured = capsysbinary.readouterr()
    replayed = [event_from_line(line) for line in captured.out.splitlines()]
    first = archive[0]["timestamp"]
    expected = [e for e in archive
                if first + 10_000_000 <= e["timestamp"] <= first + 40_000_000]
    assert len(replayed) == len(expected) > 5
    summary = json.loads(captured.err.decode().strip().splitlines()[-1])
    assert summary["events"] == len(expected)
    for out, original in zip(replayed, expected, strict=True):
        assert out["metadata"] == {**original["metadata"], "replay": "1",
                                   "replay_id": summary["replay_id"]}
        assert out["event_id"] == original["event_id"]


def test_replay_rejects_bad_arguments(archive: list[dict[str, Any]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", SID, "--speed", "-1", "--print", "--no-clickhouse"]) == 2
    assert main(["replay", SID, "--from", "soon", "--print", "--no-clickhouse"]) == 2
    assert "bad time" in capsys.readouterr().err
