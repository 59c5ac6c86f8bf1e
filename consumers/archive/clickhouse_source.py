"""Replay's fallback: rebuild a session's events from ClickHouse's ``telemetry_events`` table.

Best effort by design: the table flattens the event, so what empty strings stood for (a null
``task_id`` or an empty one) and the trace's ``sampled`` flag cannot be told apart; the archive
recording is the exact copy. Rows come back in Kafka order, one per event_id.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.errors import TransientError
from pipeline.schemas import full_name
from pipeline.settings import ClickHouseSettings

_COLUMNS = (
    "event_id", "event_type", "ts_us", "session_id", "agent", "task_id", "severity", "source",
    "trace_id", "span_id", "metadata", "redacted_fields", "schema_version", "prompt_id",
    "tool_use_id", "payload_type", "payload",
)


def _none_if_empty(value: str) -> str | None:
    return value or None


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def row_to_event(row: tuple[Any, ...]) -> dict[str, Any]:
    r = dict(zip(_COLUMNS, row, strict=True))
    trace = (
        {"trace_id": r["trace_id"], "span_id": r["span_id"], "sampled": False}
        if r["trace_id"] else None
    )
    return {
        "event_id": r["event_id"],
        "event_type": r["event_type"],
        "timestamp": int(r["ts_us"]),
        "session_id": r["session_id"],
        "agent": r["agent"],
        "task_id": _none_if_empty(r["task_id"]),
        "severity": r["severity"],
        "source": r["source"],
        "trace_context": trace,
        "metadata": {str(k): str(v) for k, v in _json_object(r["metadata"]).items()},
        "redacted_fields": list(r["redacted_fields"]),
        "schema_version": int(r["schema_version"]),
        "prompt_id": _none_if_empty(r["prompt_id"]),
        "tool_use_id": _none_if_empty(r["tool_use_id"]),
        "payload": (full_name(r["payload_type"]), _json_object(r["payload"])),
    }


class ClickHouseEventSource:
    name = "clickhouse"

    def __init__(self, clickhouse: ClickHouseSettings, database: str | None = None) -> None:
        self._settings = clickhouse
        self._database = database or clickhouse.database

    def load(self, session_id: str) -> list[dict[str, Any]] | None:
        from pipeline.migrations import client

        try:
            conn = client(self._settings, self._database)
        except Exception as exc:
            raise TransientError(f"cannot reach ClickHouse for the replay fallback: {exc}") from exc
        try:
            rows = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM {self._database}.telemetry_events"
                " WHERE session_id = %(sid)s ORDER BY kafka_partition, kafka_offset",
                {"sid": session_id},
            )
        except Exception as exc:
            raise TransientError(f"replay fallback query failed: {exc}") from exc
        finally:
            conn.disconnect()
        seen: set[str] = set()
        events = []
        for row in rows:
            event = row_to_event(tuple(row))
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                events.append(event)
        return events or None
