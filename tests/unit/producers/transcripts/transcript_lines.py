"""Builders of a hand-written transcript in Claude Code's JSONL shape (2.x): one line per content block,
usage repeated on each block of a response with output_tokens growing while it streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SID = "5d0c2b9e-1f6a-4c3b-9a57-0e8d4c1b2a10"
AGENT_ID = "a2271d1"


def line(kind: str, uuid: str, ts: str, *, parent: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": "/home/me/app",
            "sessionId": SID, "version": "2.1.30", "gitBranch": "main", "type": kind, "uuid": uuid,
            "timestamp": ts, **extra}


def usage(output: int, *, inp: int = 10, read: int = 5000, create: int = 300) -> dict[str, Any]:
    return {"input_tokens": inp, "cache_creation_input_tokens": create,
            "cache_read_input_tokens": read, "output_tokens": output, "service_tier": "standard"}


def assistant(uuid: str, ts: str, msg_id: str, req_id: str, block: dict[str, Any], out: int,
              **extra: Any) -> dict[str, Any]:
    return line("assistant", uuid, ts, requestId=req_id, message={
        "model": "claude-sonnet-4-5-20250929", "id": msg_id, "type": "message", "role": "assistant",
        "content": [block], "stop_reason": None, "stop_sequence": None, "usage": usage(out)}, **extra)


def tool_use(tool_id: str, name: str, inp: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": inp}


def result(uuid: str, ts: str, tool_id: str, content: Any, *, is_error: bool = False,
           structured: Any = None, **extra: Any) -> dict[str, Any]:
    rec = line("user", uuid, ts, message={"role": "user", "content": [
        {"tool_use_id": tool_id, "type": "tool_result", "content": content, "is_error": is_error}]},
        **extra)
    if structured is not None:
        rec["toolUseResult"] = structured
    return rec


def session_lines() -> list[dict[str, Any] | str]:
    """A session; strings are raw lines written as they are (bad lines)."""
    return [
        {"type": "permission-mode", "permissionMode": "default", "sessionId": SID},
        {"type": "file-history-snapshot", "messageId": "u1", "snapshot": {}, "isSnapshotUpdate": False},
        line("user", "u1", "2026-03-01T10:00:00.000Z", permissionMode="default",
             message={"role": "user", "content": "Fix the failing test in tests/test_api.py"}),
        assistant("a1", "2026-03-01T10:00:02.000Z", "msg_1", "req_1",
                  {"type": "text", "text": "Let me run the tests."}, 1),
        assistant("a2", "2026-03-01T10:00:03.000Z", "msg_1", "req_1",
                  tool_use("toolu_bash1", "Bash", {"command": "pytest -q tests/test_api.py",
                                                   "description": "run tests"}), 87),
        result("u2", "2026-03-01T10:00:07.500Z", "toolu_bash1", "1 passed in 0.41s",
               structured={"stdout": "1 passed in 0.41s\n", "stderr": "", "interrupted": False,
                           "isImage": False}),
        assistant("a3", "2026-03-01T10:00:09.000Z", "msg_2", "req_2",
                  tool_use("toolu_edit1", "Edit", {"file_path": "/home/me/app/api.py",
                                                   "old_string": "a\nb", "new_string": "a\nc\nd"}), 40),
        result("u3", "2026-03-01T10:00:09.200Z", "toolu_edit1", "The file has been updated.",
               structured={"filePath": "/home/me/app/api.py", "structuredPatch": [
                   {"oldStart": 1, "oldLines": 2, "newStart": 1, "newLines": 3,
                    "lines": [" a", "-b", "+c", "+d"]}]}),
        "{\"type\": \"assistant\", \"message\": {\"id\": ",  # a line cut in half
        assistant("a4", "2026-03-01T10:00:11.000Z", "msg_3", "req_3",
                  tool_use("toolu_bash2", "Bash", {"command": "FOO=1 make build -j4"}), 12),
        result("u4", "2026-03-01T10:00:14.000Z", "toolu_bash2",
               "Exit code 2\napi.c:3:1: error: expected ';'", is_error=True),
        assistant("a5", "2026-03-01T10:00:15.000Z", "msg_4", "req_4",
                  tool_use("toolu_write1", "Write", {"file_path": "/home/me/app/new.py",
                                                     "content": "x = 1\ny = 2\n"}), 30),
        assistant("a6", "2026-03-01T10:00:15.100Z", "msg_4", "req_4",
                  tool_use("toolu_read1", "Read", {"file_path": "/home/me/app/README.md"}), 55),
        result("u5", "2026-03-01T10:00:15.300Z", "toolu_write1", "File created successfully",
               structured={"type": "create", "filePath": "/home/me/app/new.py"}),
        result("u6", "2026-03-01T10:00:15.400Z", "toolu_read1", "# App",
               structured={"type": "text", "file": {"filePath": "/home/me/app/README.md",
                                                    "content": "# App\n", "numLines": 1}}),
        [1, 2, 3],  # valid JSON, not an object
        {"type": "brand-new-line-type", "sessionId": SID},
        assistant("a7", "2026-03-01T10:00:16.000Z", "msg_5", "req_5",
                  tool_use("toolu_glob1", "Glob", {"pattern": "**/*.py"}), 9),
        result("u7", "2026-03-01T10:00:16.100Z", "toolu_glob1", "a.py\nb.py",
               structured={"filenames": ["a.py", "b.py"], "numFiles": 2, "durationMs": 3}),
        assistant("a8", "2026-03-01T10:00:17.000Z", "msg_6", "req_6",
                  tool_use("toolu_task1", "Task", {"subagent_type": "Explore",
                                                   "description": "find callers",
                                                   "prompt": "Find every caller of f"}), 20),
        result("u8", "2026-03-01T10:00:47.000Z", "toolu_task1", [{"type": "text", "text": "done"}],
               structured={"status": "completed", "totalDurationMs": 29800, "totalTokens": 1000}),
        assistant("a9", "2026-03-01T10:00:48.000Z", "msg_7", "req_7",
                  tool_use("toolu_mcp1", "mcp__github__create_issue", {"title": "x"}), 15),
        result("u9", "2026-03-01T10:00:49.000Z", "toolu_mcp1", "created"),
        result("u10", "2026-03-01T10:00:49.500Z", "toolu_nobody", "orphan"),
        {"type": "summary", "summary": "Fixed tests", "leafUuid": "u9"},
        assistant("a10", "2026-03-01T10:00:50.000Z", "msg_8", "req_8",
                  tool_use("toolu_bash3", "Bash", {"command": "sleep 100"}), 3),
        line("assistant", "a11", "2026-03-01T10:00:51.000Z", message={
            "model": "<synthetic>", "id": "x", "role": "assistant",
            "content": [{"type": "text", "text": "API Error"}], "usage": usage(0)}),
    ]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path
