"""Encode/decode throughput of pipeline.serde on a realistic event mix, next to raw fastavro.

Run: .venv/bin/python bench/serde.py [--events N] [--repeat R]
Prints events/s (best of R runs) for AvroSerde, raw fastavro schemaless on the same events and
schema, the reader with logical types applied (timestamps as datetime) and validate_event.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipeline import model
from pipeline.schemas import load_catalog
from pipeline.serde import AvroSerde
from pipeline.validation import validate_event

# Rough shape of a Claude Code session: tool calls dominate, every turn bills an LLM request.
MIX: list[tuple[str, int]] = [
    ("file.read", 22),
    ("file.write", 10),
    ("file.search", 6),
    ("command.executed", 16),
    ("llm.request", 16),
    ("resource.sample", 8),
    ("user.prompt", 3),
    ("agent.task.progress", 5),
    ("agent.state.transition", 3),
    ("test.executed", 4),
    ("network.request", 3),
    ("notification", 1),
    ("session.started", 1),
    ("build.completed", 1),
    ("mcp.tool.called", 1),
]


def payload_for(event_type: str, rnd: random.Random) -> dict[str, Any]:
    path = f"src/pkg/module_{rnd.randrange(200)}.py"
    if event_type == "file.read":
        return {"path": path, "size_bytes": rnd.randrange(100, 80_000),
                "duration_us": rnd.randrange(50, 5000)}
    if event_type == "file.write":
        return {"path": path, "size_bytes": rnd.randrange(100, 80_000),
                "lines_added": rnd.randrange(0, 120), "lines_removed": rnd.randrange(0, 60),
                "checksum_sha256": f"{rnd.getrandbits(256):064x}", "reason": "edit"}
    if event_type == "file.search":
        return {"path": ".", "pattern": "**/*.py", "files_matched": rnd.randrange(0, 300)}
    if event_type == "command.executed":
        return {"binary": rnd.choice(["pytest", "git", "npm", "ls", "rg"]),
                "args": ["-q", "tests/unit", "--maxfail=1"], "cwd": "/home/dev/project",
                "env_vars_count": 48, "exit_code": rnd.choice([0, 0, 0, 1]),
                "duration_ms": rnd.randrange(10, 60_000), "cpu_user_ms": rnd.randrange(0, 9000),
                "cpu_system_ms": rnd.randrange(0, 900), "peak_memory_mib": rnd.random() * 400,
                "stdout_lines": rnd.randrange(0, 400), "stderr_lines": rnd.randrange(0, 20),
                "stdout_excerpt": "collected 212 items ... 211 passed, 1 failed in 4.2s"}
    if event_type == "llm.request":
        return {"model": "claude-sonnet-4-5", "input_tokens": rnd.randrange(1000, 150_000),
                "output_tokens": rnd.randrange(10, 4000),
                "cache_read_tokens": rnd.randrange(0, 120_000),
                "cache_creation_tokens": rnd.randrange(0, 8000), "cost_usd": rnd.random() / 10,
                "duration_ms": rnd.randrange(500, 40_000),
                "request_id": f"req_{rnd.getrandbits(64):x}"}
    if event_type == "resource.sample":
        return {"memory_mib": rnd.random() * 2048, "cpu_pct": rnd.random() * 100,
                "memory_limit_mib": 8192.0}
    if event_type == "user.prompt":
        return {"prompt_length": rnd.randrange(10, 2000), "prompt_excerpt": "fix the failing test"}
    if event_type == "agent.task.progress":
        return {"agent_name": "main", "progress_pct": rnd.random() * 100, "current_step": "edit",
                "milestones": ["plan", "edit"]}
    if event_type == "agent.state.transition":
        return {"agent_name": "main", "from_state": "thinking", "to_state": "tool_use"}
    if event_type == "test.executed":
        return {"suite": "unit", "test_name": f"test_case_{rnd.randrange(500)}",
                "outcome": rnd.choice(["passed", "passed", "failed", "skipped"]),
                "duration_ms": rnd.randrange(1, 3000)}
    if event_type == "network.request":
        return {"protocol": "https", "domain": "registry.npmjs.org", "endpoint": "/react",
                "status_code": 200, "bytes_sent": 400, "bytes_received": rnd.randrange(0, 10**6),
                "duration_ms": rnd.randrange(5, 2000)}
    if event_type == "notification":
        return {"message": "Claude needs your permission to use Bash",
                "notification_type": "permission_prompt"}
    if event_type == "session.started":
        return {"reason": "startup", "cwd": "/home/dev/project", "model": "claude-opus-4-1"}
    if event_type == "build.completed":
        return {"component": "web", "build_type": "dev", "outcome": "success",
                "duration_ms": rnd.randrange(1000, 90_000)}
    return {"json": json.dumps({"server": "github", "tool": "search_issues"})}


def make_events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    types = [t for t, _ in MIX]
    weights = [w for _, w in MIX]
    sessions = [f"{rnd.getrandbits(128):032x}" for _ in range(20)]
    base = 1_760_000_000_000_000
    return [
        model.new_event(
            event_type, rnd.choice(sessions), payload_for(event_type, rnd),
            source=rnd.choice(["hook", "otlp"]), timestamp_us=base + i * 1000,
            metadata={"cwd": "/home/dev/project", "tool_use_id": f"toolu_{i:020d}"},
            tool_use_id=f"toolu_{i:020d}",
        )
        for i, event_type in enumerate(rnd.choices(types, weights, k=count))
    ]


def best_rate(count: int, repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    serde = AvroSerde()
    entry = load_catalog().current(model.TELEMETRY_EVENT)
    schema = entry.parsed
    with_logical = parse_schema(json.loads(entry.path.read_text()))
    events = make_events(args.events)
    messages = [serde.encode_event(e) for e in events]
    bodies = [m[len(entry.header):] for m in messages]
    n = len(events)

    def raw_encode() -> None:
        for e in events:
            out = BytesIO()
            schemaless_writer(out, schema, e)
            out.getvalue()

    def raw_decode() -> None:
        for b in bodies:
            schemaless_reader(BytesIO(b), schema, None, return_record_name=True,
                              return_record_name_override=True)

    def raw_decode_logical() -> None:
        for b in bodies:
            schemaless_reader(BytesIO(b), with_logical, None, return_record_name=True,
                              return_record_name_override=True)

    # Every loop drops its results: keeping 20k decoded dicts alive measures the garbage
    # collector, not the codec (it costs ~30% on decode here).
    def serde_encode() -> None:
        for e in events:
            serde.encode_event(e)

    def serde_decode() -> None:
        for m in messages:
            serde.decode_event(m)

    def validate() -> None:
        for e in events:
            validate_event(e)

    rates = {
        "AvroSerde.encode_event": best_rate(n, args.repeat, serde_encode),
        "raw fastavro schemaless_writer": best_rate(n, args.repeat, raw_encode),
        "AvroSerde.decode_event": best_rate(n, args.repeat, serde_decode),
        "raw fastavro schemaless_reader": best_rate(n, args.repeat, raw_decode),
        "raw reader with logical types (datetime, UUID)": best_rate(
            n, args.repeat, raw_decode_logical
        ),
        "validate_event": best_rate(n, args.repeat, validate),
    }
    sizes = [len(m) for m in messages]
    print(f"events: {n} (mix of {len(MIX)} event types), mean message {sum(sizes) / n:.0f} B "
          f"(10 B header), best of {args.repeat}")
    for name, rate in rates.items():
        print(f"{name:50s} {rate:>12,.0f} events/s")
    enc = rates["raw fastavro schemaless_writer"] / rates["AvroSerde.encode_event"]
    dec = rates["raw fastavro schemaless_reader"] / rates["AvroSerde.decode_event"]
    print(f"serde cost vs raw fastavro: encode {enc:.2f}x, decode {dec:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
