"""One event as one human-readable line; pure, so the wording is unit-tested."""

from __future__ import annotations

import time
from typing import Any

from pipeline.model import (
    AGENT_TASK_EVENT,
    BUILD_EVENT,
    COMMAND_EVENT,
    FILE_EVENT,
    LLM_REQUEST,
    NETWORK_REQUEST,
    RESOURCE_SAMPLE,
    TEST_EVENT,
)

MAX_MESSAGE = 300


def _message(event: dict[str, Any]) -> str:
    etype = event.get("event_type", "")
    payload: tuple[str, dict[str, Any]] = event.get("payload") or ("", {})
    name, body = payload
    if name == FILE_EVENT:
        delta = ""
        if body.get("lines_added") is not None or body.get("lines_removed") is not None:
            delta = f" (+{body.get('lines_added') or 0}/-{body.get('lines_removed') or 0})"
        return f"{etype} {body.get('path') or body.get('pattern') or ''}{delta}"
    if name == COMMAND_EVENT:
        cmd = " ".join([str(body.get("binary") or ""), *[str(a) for a in body.get("args") or []]])
        tail = f" -> exit {body['exit_code']}" if body.get("exit_code") is not None else ""
        if body.get("duration_ms") is not None:
            tail += f" in {body['duration_ms']} ms"
        return f"$ {cmd}{tail}"
    if name == TEST_EVENT:
        return f"test {body.get('suite')}::{body.get('test_name')} {body.get('outcome')}"
    if name == BUILD_EVENT:
        return f"build {body.get('component') or ''} {body.get('outcome')}".replace("  ", " ")
    if name == LLM_REQUEST:
        return (f"llm {body.get('model')} in={body.get('input_tokens') or 0} "
                f"out={body.get('output_tokens') or 0} ${float(body.get('cost_usd') or 0):.4f}")
    if name == NETWORK_REQUEST:
        return f"{body.get('protocol') or 'net'} {body.get('domain')} -> {body.get('status_code')}"
    if name == RESOURCE_SAMPLE:
        mem, cpu = body.get("memory_mib"), body.get("cpu_pct")
        return (f"memory {'?' if mem is None else f'{mem:.0f}'} MiB, "
                f"cpu {'?' if cpu is None else f'{cpu:.0f}'}%")
    if name == AGENT_TASK_EVENT:
        what = body.get("input_description") or body.get("task_type") or body.get("current_step")
        err = f": {body['error_message']}" if body.get("error_message") else ""
        pct = f" {body['progress_pct']:.0f}%" if body.get("progress_pct") is not None else ""
        return f"{etype}{pct} {what or ''}{err}".rstrip()
    detail = body.get("message") or body.get("error_message") or body.get("reason")
    return f"{etype}: {detail}" if detail else etype


def format_event(event: dict[str, Any]) -> str:
    ts = event["timestamp"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts / 1_000_000)) + f".{ts // 1000 % 1000:03d}"
    msg = " ".join(_message(event).split())
    if len(msg) > MAX_MESSAGE:
        msg = msg[: MAX_MESSAGE - 1] + "…"
    return f"[{when}] {str(event.get('severity', 'info')).upper():<8} [{event.get('agent')}] {msg}"
