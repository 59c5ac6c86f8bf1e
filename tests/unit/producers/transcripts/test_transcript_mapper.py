from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transcript_lines import (
    AGENT_ID,
    SID,
    assistant,
    line,
    result,
    tool_use,
    write_jsonl,
)

from pipeline.serde import AvroSerde
from producers.transcripts.discover import file_context, transcript_files
from producers.transcripts.importer import file_events, import_paths
from producers.transcripts.mapper import TranscriptMapper


class ListPublisher:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def flush(self, timeout: float = 10.0) -> int:
        return 0


def _map(path: Path, **kwargs: Any) -> tuple[list[dict[str, Any]], TranscriptMapper]:
    ctx = file_context(path)
    mapper = TranscriptMapper(ctx, **kwargs)
    return list(file_events(ctx, mapper)), mapper


def _by_tool(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """tool_use_id -> its main event (a Bash test run also has a test.executed: see _tool_events)."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["tool_use_id"] and e["event_type"] not in ("test.executed", "build.completed",
                                                       "agent.task.started"):
            out[e["tool_use_id"]] = e
    return out


def _tool_events(events: list[dict[str, Any]], tool_use_id: str) -> dict[str, dict[str, Any]]:
    return {e["event_type"]: e for e in events if e["tool_use_id"] == tool_use_id}


def test_session_maps_to_the_expected_events(write_transcript: Callable[..., Path]) -> None:
    events, mapper = _map(write_transcript())
    assert Counter(e["event_type"] for e in events) == {
        "user.prompt": 1, "command.executed": 2, "test.executed": 1, "build.completed": 1,
        "file.write": 2, "file.read": 1, "file.search": 1, "agent.task.started": 1,
        "agent.task.completed": 1, "other": 2, "llm.request": 8,
        "session.started": 1, "session.ended": 1,
    }
    assert all(e["session_id"] == SID and e["source"] == "transcript" for e in events)
    assert mapper.stats.events == Counter(e["event_type"] for e in events)


def test_bad_and_unknown_lines_are_counted_not_fatal(write_transcript: Callable[..., Path]) -> None:
    _, mapper = _map(write_transcript())
    stats = mapper.stats
    assert stats.bad_lines == 2
    assert stats.bad_samples[0].startswith("line 9: invalid JSON")
    assert "not a JSON object" in stats.bad_samples[1]
    assert stats.unknown_types == {"brand-new-line-type": 1}
    assert stats.ignored_types == {"permission-mode": 1, "file-history-snapshot": 1, "summary": 1}
    assert stats.orphan_tool_results == 1
    assert stats.lines == 27


def test_usage_is_folded_per_response_keeping_the_final_counts(
    write_transcript: Callable[..., Path],
) -> None:
    events, mapper = _map(write_transcript())
    llm = {e["payload"][1]["request_id"]: e["payload"][1] for e in events
           if e["event_type"] == "llm.request"}
    assert sorted(llm) == [f"req_{i}" for i in range(1, 9)]
    # msg_1 came as two lines with output_tokens 1 then 87; msg_4 as 30 then 55.
    assert llm["req_1"]["output_tokens"] == 87
    assert llm["req_4"]["output_tokens"] == 55
    assert llm["req_1"] == {"model": "claude-sonnet-4-5-20250929", "input_tokens": 10,
                            "output_tokens": 87, "cache_read_tokens": 5000,
                            "cache_creation_tokens": 300, "cost_usd": None,
                            "duration_ms": None, "request_id": "req_1"}
    assert mapper.stats.usage_lines_folded == 2
    # The synthetic API-error message carries no real usage.
    assert all(p["model"] != "<synthetic>" for p in llm.values())


def test_tool_pairs_carry_results(write_transcript: Callable[..., Path]) -> None:
    events, _ = _map(write_transcript())
    tools = _by_tool(events)
    ok = tools["toolu_bash1"]["payload"][1]
    assert (ok["binary"], ok["args"], ok["exit_code"]) == ("pytest", ["-q", "tests/test_api.py"], 0)
    assert ok["duration_ms"] == 4500 and ok["stdout_excerpt"] == "1 passed in 0.41s\n"
    assert tools["toolu_bash1"]["timestamp"] == 1772359207500000  # the result's time
    test_run = _tool_events(events, "toolu_bash1")["test.executed"]["payload"][1]
    assert (test_run["suite"], test_run["outcome"]) == ("pytest", "passed")
    failed = tools["toolu_bash2"]
    assert failed["payload"][1]["binary"] == "make"
    assert failed["payload"][1]["args"] == ["build", "-j4"]
    assert failed["payload"][1]["exit_code"] == 2
    assert "expected ';'" in failed["payload"][1]["stderr_excerpt"]
    assert failed["severity"] == "warning"
    build = _tool_events(events, "toolu_bash2")["build.completed"]
    assert build["payload"][1]["outcome"] == "failure"
    edit = tools["toolu_edit1"]["payload"][1]
    assert (edit["path"], edit["lines_added"], edit["lines_removed"]) == ("/home/me/app/api.py", 2, 1)
    write = tools["toolu_write1"]["payload"][1]
    assert write["checksum_sha256"] == hashlib.sha256(b"x = 1\ny = 2\n").hexdigest()
    assert (write["lines_added"], write["size_bytes"]) == (2, 12)
    assert tools["toolu_read1"]["payload"][1]["size_bytes"] == 6
    assert tools["toolu_glob1"]["payload"][1]["files_matched"] == 2
    task = tools["toolu_task1"]
    assert task["event_type"] == "agent.task.completed"
    assert task["payload"][1]["agent_name"] == "Explore"
    assert task["payload"][1]["duration_ms"] == 29800
    assert _tool_events(events, "toolu_task1")["agent.task.started"]["task_id"] == "toolu_task1"
    other = tools["toolu_mcp1"]
    assert other["payload"][0] == "dev.agentwatch.OtherEvent"
    assert other["payload"][1]["name"] == "tool.mcp__github__create_issue"
    assert json.loads(other["payload"][1]["json"])["tool_input"] == {"title": "x"}


def test_unpaired_tool_use_is_emitted_at_end_of_file(write_transcript: Callable[..., Path]) -> None:
    events, mapper = _map(write_transcript())
    dangling = _by_tool(events)["toolu_bash3"]
    assert dangling["event_type"] == "other" and dangling["metadata"]["outcome"] == "unfinished"
    assert dangling["payload"][1]["name"] == "tool.unfinished"
    assert json.loads(dangling["payload"][1]["json"])["tool_input"]["command"] == "sleep 100"
    assert mapper.stats.unpaired_tool_uses == 1


def test_tool_events_get_the_ids_the_collector_gives_the_same_hooks(
    write_transcript: Callable[..., Path],
) -> None:
    from producers.collector.hooks import HookContext, HookState, map_hook

    events, _ = _map(write_transcript())
    ours = _tool_events(events, "toolu_bash2")
    hook = {"session_id": SID, "hook_event_name": "PostToolUseFailure", "cwd": "/home/me/app",
            "tool_name": "Bash", "tool_use_id": "toolu_bash2",
            "tool_input": {"command": "FOO=1 make build -j4"},
            "error": "Exit code 2\napi.c:3:1: error: expected ';'", "is_interrupt": False}
    live = {e["event_type"]: e for e in map_hook(hook, HookContext(received_us=1), HookState())}
    assert {t: e["event_id"] for t, e in ours.items()} == {t: e["event_id"] for t, e in live.items()}
    for field_name in ("binary", "args", "exit_code"):
        assert (ours["command.executed"]["payload"][1][field_name]
                == live["command.executed"]["payload"][1][field_name])


def test_import_is_idempotent(write_transcript: Callable[..., Path]) -> None:
    path = write_transcript()
    first, _ = _map(path)
    second, _ = _map(path)
    assert first == second
    ids = [e["event_id"] for e in first]
    assert len(set(ids)) == len(ids)


def test_ids_do_not_depend_on_the_file_location(
    write_transcript: Callable[..., Path], tmp_path: Path,
) -> None:
    here = write_transcript()
    elsewhere = tmp_path / "copy" / here.name
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(here.read_bytes())
    assert [e["event_id"] for e in _map(here)[0]] == [e["event_id"] for e in _map(elsewhere)[0]]


def test_every_event_encodes_with_the_contract(write_transcript: Callable[..., Path]) -> None:
    serde = AvroSerde()
    for event in _map(write_transcript())[0]:
        assert serde.decode_event(serde.encode_event(event)) == event


def test_session_bounds(write_transcript: Callable[..., Path]) -> None:
    events, _ = _map(write_transcript())
    started = next(e for e in events if e["event_type"] == "session.started")
    ended = next(e for e in events if e["event_type"] == "session.ended")
    assert started["payload"][1]["cwd"] == "/home/me/app"
    assert started["payload"][1]["model"] == "claude-sonnet-4-5-20250929"
    assert ended["payload"][1]["duration_ms"] == 51_000
    assert ended["metadata"] == {"inferred_from": "transcript"}


def test_pending_usage_is_bounded(write_transcript: Callable[..., Path]) -> None:
    path = write_transcript()
    bounded, _ = _map(path, max_pending_usage=2)
    unbounded, _ = _map(path)

    def llm(events: list[dict[str, Any]]) -> dict[str, Any]:
        return {e["event_id"]: e for e in events if e["event_type"] == "llm.request"}

    assert llm(bounded) == llm(unbounded)
    # Emitted while reading, not only at the end.
    ctx = file_context(path)
    early = TranscriptMapper(ctx, max_pending_usage=2)
    from producers.transcripts.lines import read_lines

    during = [e for ln in read_lines(path) for e in early.feed(ln)]
    assert sum(1 for e in during if e["event_type"] == "llm.request") == 6


def test_duplicate_result_lines_are_not_emitted_twice(write_transcript: Callable[..., Path]) -> None:
    rows = [
        assistant("a1", "2026-03-01T10:00:00.000Z", "m1", "r1",
                  tool_use("toolu_1", "Bash", {"command": "ls"}), 5),
        result("u1", "2026-03-01T10:00:01.000Z", "toolu_1", "a\nb"),
        result("u1b", "2026-03-01T10:00:01.000Z", "toolu_1", "a\nb"),
    ]
    events, mapper = _map(write_transcript(rows))
    assert sum(1 for e in events if e["tool_use_id"] == "toolu_1") == 1
    assert mapper.stats.duplicate_tool_results == 1


def test_lines_without_timestamp_or_message(write_transcript: Callable[..., Path]) -> None:
    rows = [
        {"type": "user", "sessionId": SID, "message": {"role": "user", "content": "hi"}},
        {"type": "assistant", "sessionId": SID, "timestamp": "2026-03-01T10:00:00Z"},
        line("user", "u1", "2026-03-01T10:00:01Z", message={"role": "user", "content": "hello"}),
        {"type": "user", "sessionId": SID, "message": {"role": "user", "content": "later"}},
    ]
    events, mapper = _map(write_transcript(rows))
    assert mapper.stats.bad_lines == 2
    prompts = [e for e in events if e["event_type"] == "user.prompt"]
    # A later line without a timestamp borrows the previous line's.
    assert [p["timestamp"] for p in prompts] == [1772359201000000, 1772359201000000]


def test_subagent_files_join_their_parent_session(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-home-me-app"
    write_jsonl(project / f"{SID}.jsonl", [
        line("user", "u1", "2026-03-01T10:00:00Z", message={"role": "user", "content": "go"}),
    ])
    sub = project / SID / "subagents" / f"agent-{AGENT_ID}.jsonl"
    write_jsonl(sub, [
        line("user", "s1", "2026-03-01T10:00:01Z", isSidechain=True, agentId=AGENT_ID,
             message={"role": "user", "content": "Find every caller of f"}),
        assistant("s2", "2026-03-01T10:00:02Z", "msg_s", "req_s",
                  tool_use("toolu_s1", "Grep", {"pattern": "f\\(", "path": "/home/me/app"}), 7,
                  isSidechain=True, agentId=AGENT_ID),
        result("s3", "2026-03-01T10:00:03Z", "toolu_s1", "x.py", isSidechain=True,
               structured={"mode": "files_with_matches", "numFiles": 1, "filenames": ["x.py"]}),
    ])
    (sub.parent / f"agent-{AGENT_ID}.meta.json").write_text(
        json.dumps({"agentType": "Explore", "description": "find callers"}))
    write_jsonl(project / SID / "subagents" / "workflows" / "wf_1" / "journal.jsonl", [{"x": 1}])

    publisher = ListPublisher()
    report = import_paths([tmp_path / "projects"], publisher)
    assert [Path(f.path).name for f in report.files] == [f"{SID}.jsonl", f"agent-{AGENT_ID}.jsonl"]
    sub_events = [e for e in publisher.events if e["metadata"].get("agent_id") == AGENT_ID]
    assert sorted(e["event_type"] for e in sub_events) == ["file.search", "llm.request"]
    for event in sub_events:
        assert event["session_id"] == SID
        assert event["metadata"]["agent_type"] == "Explore"
        assert event["metadata"]["sidechain"] == "true"
    assert sum(1 for e in publisher.events if e["event_type"] == "session.started") == 1
    assert report.totals()["published"] == len(publisher.events) == 5


def test_directory_walk_sees_each_file_once(write_transcript: Callable[..., Path]) -> None:
    path = write_transcript()
    assert list(transcript_files([path, path.parent, path.parent.parent])) == [path]


def test_report_totals(write_transcript: Callable[..., Path], tmp_path: Path) -> None:
    write_transcript()
    report = import_paths([tmp_path / "projects", tmp_path / "missing.jsonl"], None)
    totals = report.totals()
    assert totals["files"] == 1 and totals["unreadable_files"] == 1
    assert totals["bad_lines"] == 2 and totals["unknown_line_types"] == {"brand-new-line-type": 1}
    assert totals["events_total"] == 23 and totals["published"] == 0
    json.dumps(report.to_json())
