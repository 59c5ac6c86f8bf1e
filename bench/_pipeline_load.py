"""Load process of bench/whole_pipeline.py: OTLP/protobuf log batches POSTed to a collector.

    python bench/_pipeline_load.py --port P --rate R --seconds S [--batch 1000] [--conns 4]

Its own process, so its CPU does not slow the measuring one. Every batch is a fresh
ExportLogsServiceRequest of Claude Code-shaped log records in a fixed mix (per 10 records: 4
api_request, 2 tool_result Bash running pytest, 1 tool_result Edit, 1 tool_result Read,
1 user_prompt, 1 tool_decision) over ``--sessions`` sessions. The collector derives event ids from
the record bytes, so each batch gets new timestamps: no two records are alike.

``--rate`` records/s open loop (batch k due at start + k * batch / rate; a late batch goes
at once), 0 = back to back on every connection. A 503 (spool full) is retried after its
Retry-After and counted. Prints one JSON line: records accepted, batches, refusals, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

MIX: tuple[tuple[str, dict[str, Any]], ...] = (
    ("api_request", {"model": "claude-sonnet-4-5", "input_tokens": 1200, "output_tokens": 350,
                     "cache_read_tokens": 9000, "cache_creation_tokens": 100,
                     "cost_usd": 0.0123, "duration_ms": 2345, "request_id": "req_011"}),
    ("tool_result", {"tool_name": "Bash", "success": "true", "duration_ms": 1234,
                     "decision_type": "accept", "decision_source": "config",
                     "tool_result_size_bytes": 120,
                     "tool_parameters": '{"bash_command":"pytest","full_command":'
                                        '"pytest -q tests/unit","timeout":120000,'
                                        '"description":"Run unit tests"}'}),
    ("api_request", {"model": "claude-sonnet-4-5", "input_tokens": 2400, "output_tokens": 80,
                     "cache_read_tokens": 12000, "cost_usd": 0.0061, "duration_ms": 1800,
                     "request_id": "req_012"}),
    ("tool_result", {"tool_name": "Edit", "success": "true", "duration_ms": 5,
                     "tool_parameters": '{"file_path":"/home/dev/app/src/app.py"}'}),
    ("api_request", {"model": "claude-sonnet-4-5", "input_tokens": 2600, "output_tokens": 900,
                     "cache_read_tokens": 12500, "cost_usd": 0.0201, "duration_ms": 6100,
                     "request_id": "req_013"}),
    ("tool_result", {"tool_name": "Read", "success": "true", "duration_ms": 3,
                     "tool_parameters": '{"file_path":"/home/dev/app/tests/test_app.py"}'}),
    ("user_prompt", {"prompt_length": 58,
                     "prompt": "Fix the failing test in tests/test_app.py and run the suite"}),
    ("tool_decision", {"tool_name": "Bash", "decision": "accept", "source": "config"}),
    ("api_request", {"model": "claude-haiku-4-5", "input_tokens": 300, "output_tokens": 40,
                     "cost_usd": 0.0004, "duration_ms": 700, "request_id": "req_014"}),
    ("tool_result", {"tool_name": "Bash", "success": "false", "duration_ms": 2210,
                     "error": "Exit code 1",
                     "tool_parameters": '{"full_command":"pytest -q tests/test_app.py"}'}),
)


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=int(value)))


class Batches:
    """One request object reused: only the timestamps change between batches (cheap with upb)."""

    def __init__(self, size: int, sessions: int, prefix: str) -> None:
        records = []
        for i in range(size):
            name, attrs = MIX[i % len(MIX)]
            session = f"{prefix}-s{(i // len(MIX)) % sessions:03d}"
            records.append(LogRecord(
                body=AnyValue(string_value=f"claude_code.{name}"),
                attributes=[_kv("event.name", name), _kv("session.id", session),
                            _kv("prompt.id", f"{session}-p{i // 100}"),
                            *(_kv(k, v) for k, v in attrs.items())]))
        self.request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
            scope_logs=[ScopeLogs(log_records=records)])])
        self.records = self.request.resource_logs[0].scope_logs[0].log_records
        self.size = size
        self.last_ns = 0

    def next(self) -> bytes:
        now = max(time.time_ns(), self.last_ns + self.size)
        for i, rec in enumerate(self.records):
            rec.time_unix_nano = now + i
        self.last_ns = now + self.size
        return self.request.SerializeToString()


def _request(port: int, body: bytes) -> bytes:
    return (f"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, float]:
    """(status, Retry-After) of one request on a raw kept-alive stream: far lighter than an
    aiohttp client, so the load process leaves the cores to the pipeline."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length, retry = 0, 1.0
    for line in head.split(b"\r\n"):
        low = line.lower()
        if low.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif low.startswith(b"retry-after:"):
            retry = float(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), retry


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    batches = Batches(args.batch, args.sessions, args.prefix)
    per_s = args.rate / args.batch if args.rate > 0 else 0.0
    start = time.perf_counter() + 0.05
    until = start + args.seconds
    counts = {"records": 0, "batches": 0, "refused": 0, "failed": 0}
    due = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        try:
            while True:
                k = due[0]
                due[0] += 1
                if per_s:
                    at = start + k / per_s
                    if at >= until:
                        return
                    if (delay := at - time.perf_counter()) > 0:
                        await asyncio.sleep(delay)
                elif time.perf_counter() >= until:
                    return
                request = _request(args.port, batches.next())
                while True:
                    status, retry = await _exchange(reader, writer, request)
                    if status != 503 or time.perf_counter() >= until:
                        break
                    counts["refused"] += 1
                    await asyncio.sleep(min(retry, 1.0))
                if status == 200:
                    counts["records"] += args.batch
                    counts["batches"] += 1
                else:
                    counts["failed"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(args.conns)))
    return {**counts, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="records/s; 0 = back to back")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--prefix", default="bench")
    print(json.dumps(asyncio.run(drive(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
