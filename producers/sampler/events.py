"""The sampler's measurements as TelemetryEvents.

- ``resource.sample`` (ResourceSample): an agent's whole process tree, every interval.
- ``command.resources`` (CommandEvent, same ``tool_use_id`` as the collector's
  ``command.executed``): peak RSS, CPU user/system time and wall time of one Bash call's
  processes. A linked event rather than a second run: ``exit_code`` stays null, the widget
  reducer does not count it as a command, and its id is derived from the call, so a resend
  is the same event.
- ``network.request`` (NetworkRequest): a connection first seen, or a host a command names.
- ``network.transfer`` (NetworkRequest): bytes moved on an already reported connection.

The Source enum has no symbol for a host sampler; events go out as ``sdk`` with
``metadata.producer = "sampler"``.
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline import model
from producers.collector.commands import program_and_args
from producers.sampler.calls import FinishedCall
from producers.sampler.domains import Access
from producers.sampler.network import NetEvent

PRODUCER = "sampler"
SOURCE = model.Source.SDK.value
_NS = uuid.UUID("0f6b3c1e-27c4-4d5e-9a0c-5d8e2b7a4f31")
MIB = 1024 * 1024


def _meta(**extra: str | None) -> dict[str, str]:
    out = {"producer": PRODUCER}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def resource_sample(session_id: str, agent: str, ts_us: int, *, rss_bytes: int, cpu_pct: float,
                    memory_limit_bytes: int | None, cpu_limit_pct: float | None,
                    processes: int, pid: int) -> dict[str, Any]:
    body = {"memory_mib": round(rss_bytes / MIB, 3), "cpu_pct": round(max(0.0, cpu_pct), 2),
            "memory_limit_mib": round(memory_limit_bytes / MIB, 1) if memory_limit_bytes else None,
            "cpu_limit_pct": cpu_limit_pct}
    return model.new_event(
        "resource.sample", session_id, body, agent=agent, source=SOURCE, timestamp_us=ts_us,
        metadata=_meta(processes=str(processes), pid=str(pid)))


def command_resources(done: FinishedCall, agent: str, ts_us: int) -> dict[str, Any]:
    call = done.call
    if call.command:
        binary, args = program_and_args(call.command)
    else:
        binary, args = done.top_name or "<unknown>", []
    body = {
        "binary": binary or "<unknown>", "args": args, "cwd": done.cwd,
        "duration_ms": round(done.duration_s * 1000) if done.duration_s is not None else None,
        "cpu_user_ms": round(done.cpu_user_s * 1000),
        "cpu_system_ms": round(done.cpu_system_s * 1000),
        "peak_memory_mib": round(done.peak_rss_bytes / MIB, 3) if done.peak_rss_bytes else None,
        "network_requests": [a.domain for a in done.accesses],
    }
    event_id = str(uuid.uuid5(_NS, f"{call.session_id}/{call.tool_use_id}/command.resources"))
    return model.new_event(
        "command.resources", call.session_id, body, agent=agent, source=SOURCE,
        timestamp_us=ts_us, event_id=event_id, tool_use_id=call.tool_use_id,
        severity=model.Severity.INFO.value,
        metadata=_meta(links="command.executed", processes=str(done.processes),
                       complete=str(done.complete).lower(),
                       peak="lifetime" if done.exact_peak else "sampled"))


def connection(ev: NetEvent, agent: str, ts_us: int) -> dict[str, Any]:
    body: dict[str, Any] = {"protocol": ev.protocol, "domain": ev.remote_ip}
    if ev.kind == "transfer":
        body.update(bytes_sent=ev.bytes_sent, bytes_received=ev.bytes_received,
                    duration_ms=round(ev.duration_s * 1000) if ev.duration_s is not None else None)
    state = None if ev.kind == "request" else ("closed" if ev.closed else "open")
    return model.new_event(
        "network.request" if ev.kind == "request" else "network.transfer", ev.owner.session_id,
        body, agent=agent, source=SOURCE, timestamp_us=ts_us, tool_use_id=ev.owner.tool_use_id,
        metadata=_meta(via="connection", remote_port=str(ev.remote_port),
                       process=ev.owner.process, state=state))


def access(found: Access, session_id: str, tool_use_id: str | None, agent: str,
           ts_us: int) -> dict[str, Any]:
    return model.new_event(
        "network.request", session_id, {"protocol": found.protocol, "domain": found.domain},
        agent=agent, source=SOURCE, timestamp_us=ts_us, tool_use_id=tool_use_id,
        metadata=_meta(via=found.via, program=found.program,
                       inferred="true" if found.via == "registry" else None))
