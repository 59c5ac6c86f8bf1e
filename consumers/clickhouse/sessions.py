"""The ``sessions`` table: one row per session, the latest version wins (ReplacingMergeTree).

``fold_session`` is pure: previous state + a session's new events -> new state. ``SessionFolder``
reads the current rows of the sessions in a batch (FINAL), folds, and inserts the new versions
before the events themselves are inserted. Each row remembers the Kafka position of the last
event folded into it, and events at or before that position are not folded again, so a batch
replayed after a crash (or retried after a timeout) never counts an event twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline import model
from pipeline.sinks import Record

SESSION_COLUMNS: tuple[str, ...] = (
    "session_id", "agent", "source", "status", "started_at", "started_us", "last_event_at",
    "last_event_us", "ended_us", "end_reason", "cwd", "model", "permission_mode",
    "transcript_path", "events", "errors", "warnings", "files_written", "lines_added",
    "lines_removed", "commands", "commands_failed", "tests_passed", "tests_failed", "builds",
    "builds_failed", "llm_requests", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_creation_tokens", "cost_usd", "kafka_topic", "kafka_partition", "kafka_offset",
    "version",
)
_COUNTERS = (
    "events", "errors", "warnings", "files_written", "lines_added", "lines_removed", "commands",
    "commands_failed", "tests_passed", "tests_failed", "builds", "builds_failed", "llm_requests",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
)

_IDS_PER_QUERY = 1_000

SessionState = dict[str, Any]
Located = tuple[Mapping[str, Any], str, int, int]
"""(event, topic, partition, offset)."""


def new_state(session_id: str) -> SessionState:
    state: SessionState = {c: 0 for c in _COUNTERS}
    state.update(
        session_id=session_id, agent="", source="", status="", started_at=0, started_us=0,
        last_event_at=0, last_event_us=0, ended_us=None, end_reason="", cwd="", model="",
        permission_mode="", transcript_path="", cost_usd=0.0, kafka_topic="", kafka_partition=0,
        kafka_offset=0, version=0,
    )
    return state


def _already_folded(state: SessionState, topic: str, partition: int, offset: int) -> bool:
    return bool(state["version"] > 0 and state["kafka_topic"] == topic
                and state["kafka_partition"] == partition and offset <= state["kafka_offset"])


def fold_session(previous: SessionState | None, session_id: str,
                 events: Iterable[Located]) -> SessionState | None:
    """The next version of a session, or None when every event was folded before."""
    state = dict(previous) if previous is not None else new_state(session_id)
    changed = False
    for event, topic, partition, offset in events:
        if _already_folded(state, topic, partition, offset):
            continue
        changed = True
        _apply(state, event)
        state["kafka_topic"], state["kafka_partition"], state["kafka_offset"] = (
            topic, partition, offset)
    if not changed:
        return None
    state["version"] = int(state["version"]) + 1
    state["started_at"] = state["started_us"] // 1_000_000
    state["last_event_at"] = state["last_event_us"] // 1_000_000
    return state


def _apply(s: SessionState, event: Mapping[str, Any]) -> None:
    ts = int(event["timestamp"])
    event_type = str(event["event_type"])
    family, p = event["payload"]
    s["agent"] = event.get("agent") or s["agent"]
    s["source"] = event.get("source") or s["source"]
    if s["started_us"] == 0 or ts < s["started_us"]:
        s["started_us"] = ts
    s["last_event_us"] = max(s["last_event_us"], ts)
    s["events"] += 1
    severity = event.get("severity")
    if severity in ("error", "critical"):
        s["errors"] += 1
    elif severity == "warning":
        s["warnings"] += 1

    if event_type == "session.ended":
        s["status"] = "ended"
        s["ended_us"] = max(s["ended_us"] or 0, ts)
        s["end_reason"] = p.get("reason") or s["end_reason"]
    elif event_type == "session.stalled":
        if s["status"] != "ended":
            s["status"] = "stalled"
    elif event_type == "session.started" or s["status"] in ("", "stalled"):
        s["status"] = "active"
    if family == model.SESSION_EVENT:
        for key in ("cwd", "model", "permission_mode", "transcript_path"):
            if p.get(key):
                s[key] = p[key]
    elif family == model.FILE_EVENT:
        if event_type == "file.write":
            s["files_written"] += 1
        s["lines_added"] += max(0, p.get("lines_added") or 0)
        s["lines_removed"] += max(0, p.get("lines_removed") or 0)
    elif family == model.COMMAND_EVENT:
        s["commands"] += 1
        if p.get("exit_code") not in (None, 0):
            s["commands_failed"] += 1
    elif family == model.TEST_EVENT:
        if p.get("outcome") == "passed":
            s["tests_passed"] += 1
        elif p.get("outcome") in ("failed", "errored"):
            s["tests_failed"] += 1
    elif family == model.BUILD_EVENT:
        s["builds"] += 1
        if p.get("outcome") == "failure":
            s["builds_failed"] += 1
    elif family == model.LLM_REQUEST:
        s["llm_requests"] += 1
        for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
            s[key] += max(0, p.get(key) or 0)
        s["cost_usd"] += p.get("cost_usd") or 0.0
        if not s["model"] and p.get("model"):
            s["model"] = p["model"]


def session_row(state: SessionState) -> tuple[Any, ...]:
    return tuple(state[c] for c in SESSION_COLUMNS)


class SessionFolder:
    """Reads, folds and writes the sessions of a batch (see the module docstring)."""

    def __init__(self, database: str) -> None:
        self._db = database
        self._select = (f"SELECT {', '.join(SESSION_COLUMNS)} FROM {database}.sessions FINAL "
                        "WHERE session_id IN %(ids)s")
        self._insert = f"INSERT INTO {database}.sessions ({', '.join(SESSION_COLUMNS)}) VALUES"

    def apply(self, client: Any, records: Sequence[Record[Any]]) -> int:
        """Fold ``records`` (decoded events) into their sessions; returns rows written."""
        grouped: dict[str, list[Located]] = {}
        for rec in records:
            grouped.setdefault(rec.value["session_id"], []).append(
                (rec.value, rec.topic, rec.partition, rec.offset))
        if not grouped:
            return 0
        current: dict[str, SessionState] = {}
        ids = list(grouped)
        # Chunked: the IN list travels in the query text, bounded by the server's max_query_size.
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = tuple(ids[start:start + _IDS_PER_QUERY])
            for row in client.execute(self._select, {"ids": chunk}):
                state = dict(zip(SESSION_COLUMNS, row, strict=True))
                current[state["session_id"]] = state
        rows = []
        for session_id, located in grouped.items():
            folded = fold_session(current.get(session_id), session_id, located)
            if folded is not None:
                rows.append(session_row(folded))
        if rows:
            columns = list(zip(*rows, strict=True))
            client.execute(self._insert, columns, columnar=True)
        return len(rows)


def states_by_session(rows: Iterable[Sequence[Any]]) -> Mapping[str, SessionState]:
    """Rows of ``SELECT <SESSION_COLUMNS> FROM sessions FINAL`` as state dicts (for tests/tools)."""
    return {str(r[0]): dict(zip(SESSION_COLUMNS, r, strict=True)) for r in rows}
