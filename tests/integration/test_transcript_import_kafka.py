"""`agentwatch import` into a real topic: every mapped event arrives, and a re-import repeats ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from pipeline.serde import AvroSerde
from producers.transcripts.discover import file_context, transcript_files
from producers.transcripts.importer import file_events
from producers.transcripts.mapper import TranscriptMapper

pytestmark = pytest.mark.integration

SID = "0f3e7c1a-9b2d-4e8f-a6c5-1d2b3c4e5f60"


def _read(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
    """Messages from offset 0; waits for ``count``, then one more second to catch extras."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"rb-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
                if len(out) == count:
                    deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        consumer.close()
    return out


def _line(kind: str, uid: str, second: int, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "uuid": uid, "sessionId": SID, "cwd": "/w",
            "timestamp": f"2026-04-02T09:00:{second:02d}.000Z", "isSidechain": False, **extra}


def _assistant(uid: str, second: int, msg: str, req: str, block: dict[str, Any], out: int,
               **extra: Any) -> dict[str, Any]:
    return _line("assistant", uid, second, requestId=req, message={
        "id": msg, "model": "claude-opus-4-1", "role": "assistant", "content": [block],
        "usage": {"input_tokens": 4, "output_tokens": out, "cache_read_input_tokens": 900,
                  "cache_creation_input_tokens": 0}}, **extra)


def _result(uid: str, second: int, tool_id: str, text: str, error: bool = False,
            **extra: Any) -> dict[str, Any]:
    return _line("user", uid, second, message={"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": tool_id, "content": text, "is_error": error}]},
        **extra)


def _write(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture
def transcripts(tmp_path: Path) -> Path:
    root = tmp_path / "projects" / "-w"
    _write(root / f"{SID}.jsonl", [
        _line("user", "u1", 0, message={"role": "user", "content": "make the build pass"}),
        _assistant("a1", 1, "msg_1", "req_1", {"type": "text", "text": "Building."}, 2),
        _assistant("a2", 2, "msg_1", "req_1", {"type": "tool_use", "id": "toolu_b1", "name": "Bash",
                                               "input": {"command": "cargo build"}}, 60),
        _result("u2", 9, "toolu_b1", "Exit code 101\nerror[E0308]: mismatched types", error=True),
        "not json at all",
        _assistant("a3", 10, "msg_2", "req_2", {"type": "tool_use", "id": "toolu_e1", "name": "Edit",
                                                "input": {"file_path": "/w/src/main.rs",
                                                          "old_string": "1", "new_string": "2"}}, 30),
        _result("u3", 11, "toolu_e1", "updated"),
        {"type": "some-future-type", "sessionId": SID},
    ])
    _write(root / SID / "subagents" / "agent-b77.jsonl", [
        _assistant("s1", 3, "msg_s", "req_s", {"type": "tool_use", "id": "toolu_r1", "name": "Read",
                                               "input": {"file_path": "/w/Cargo.toml"}}, 8,
                   isSidechain=True, agentId="b77"),
        _result("s2", 4, "toolu_r1", "[package]", isSidechain=True, agentId="b77"),
    ])
    return tmp_path / "projects"


def _expected(root: Path) -> dict[str, dict[str, Any]]:
    events: dict[str, dict[str, Any]] = {}
    for path in transcript_files([root]):
        ctx = file_context(path)
        for event in file_events(ctx, TranscriptMapper(ctx)):
            events[event["event_id"]] = event
    return events


def _import(root: Path, topic: str, bootstrap: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "import", str(root), "--topic", topic, "--json"],
        env={**os.environ, "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
             "AGENTWATCH_SPOOL__DIR": str(root.parent / "spool")},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_import_reads_back_from_kafka_and_is_idempotent(
    transcripts: Path, kafka_bootstrap: str, kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic("import", partitions=2)
    expected = _expected(transcripts)
    assert Counter(e["event_type"] for e in expected.values()) == {
        "user.prompt": 1, "command.executed": 1, "build.completed": 1, "file.write": 1,
        "file.read": 1, "llm.request": 3, "session.started": 1, "session.ended": 1,
    }

    report = _import(transcripts, topic, kafka_bootstrap)
    assert (transcripts.parent / "spool").is_dir()  # went through the durable spool
    totals = report["totals"]
    assert (totals["published"], totals["undelivered"]) == (len(expected), 0)
    assert (totals["bad_lines"], totals["unknown_line_types"]) == (1, {"some-future-type": 1})

    serde = AvroSerde()
    first = [serde.decode_event(m.value()) for m in _read(kafka_bootstrap, topic, len(expected))]
    assert {e["event_id"]: e for e in first} == expected
    assert len(first) == len(expected)
    build = next(e for e in first if e["event_type"] == "command.executed")
    assert (build["payload"][1]["binary"], build["payload"][1]["exit_code"]) == ("cargo", 101)

    _import(transcripts, topic, kafka_bootstrap)
    both = [serde.decode_event(m.value()) for m in _read(kafka_bootstrap, topic, 2 * len(expected))]
    assert len(both) == 2 * len(expected)
    assert Counter(e["event_id"] for e in both) == {eid: 2 for eid in expected}
