"""Which files to import, and what their paths say about them.

Layout (Claude Code 2.1+): ``~/.claude/projects/<project>/<session>.jsonl`` is a session;
``<project>/<session>/subagents/agent-<agentId>.jsonl`` holds one subagent run of that session,
with an optional ``agent-<agentId>.meta.json`` beside it (``agentType``, ``description``).
Older releases wrote ``agent-<agentId>.jsonl`` next to the session files; those lines still
carry the parent's ``sessionId``. ``journal.jsonl`` files of workflows are not transcripts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from producers.transcripts.mapper import FileContext

NOT_TRANSCRIPTS = frozenset({"journal.jsonl"})


def transcript_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and every ``*.jsonl`` under named directories, sorted, once each."""
    seen: set[Path] = set()
    for given in paths:
        path = given.expanduser()
        if path.is_dir():
            # (dirs..., stem) puts a session file before its <session>/subagents/ files.
            found = sorted((p for p in path.rglob("*.jsonl")
                            if p.is_file() and p.name not in NOT_TRANSCRIPTS),
                           key=lambda p: (*p.parent.parts, p.stem))
        else:
            found = [path]
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


def _agent_type(meta_path: Path) -> str | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = meta.get("agentType") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


def file_context(path: Path) -> FileContext:
    stem = path.stem
    if not stem.startswith("agent-"):
        return FileContext(path=path, session_hint=stem)
    agent_id = stem.removeprefix("agent-")
    parent = path.parent
    session_hint = parent.parent.name if parent.name == "subagents" else None
    agent_type = _agent_type(path.with_name(f"{stem}.meta.json"))
    return FileContext(path=path, session_hint=session_hint, agent_id=agent_id,
                       agent_type=agent_type)
