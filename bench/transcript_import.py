"""Transcript import: mapping throughput and memory on a large synthetic transcript.

Run: .venv/bin/python bench/transcript_import.py [--mb 64] [--publish]
Writes a Claude Code-shaped transcript of about --mb MB (tool calls with kilobytes of output,
usage repeated per content block, a Write of a large file now and then), then imports it with
--dry-run semantics (read, map, validate) and prints lines/s, MB/s, events/s and the peak RSS.
--publish also sends the events through the durable spool to a fresh topic on the local broker.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from producers.transcripts.importer import import_paths

SID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def _line(kind: str, ts: float, **extra: Any) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
    return {"type": kind, "uuid": str(uuid.uuid4()), "parentUuid": None, "sessionId": SID,
            "timestamp": stamp, "cwd": "/home/dev/app", "isSidechain": False, "version": "2.1.30",
            **extra}


def write_transcript(path: Path, megabytes: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    limit, written, ts, turn = megabytes * 1024 * 1024, 0, 1_770_000_000.0, 0
    output = "".join(rng.choice("abcdefghij \n") for _ in range(64 * 1024))
    with path.open("w") as fh:
        while written < limit:
            turn += 1
            msg, req, tool = f"msg_{turn:08d}", f"req_{turn:08d}", f"toolu_{turn:010d}"
            usage = {"input_tokens": 4, "cache_read_input_tokens": 20_000 + turn,
                     "cache_creation_input_tokens": 100, "output_tokens": 1}
            name = rng.choice(("Bash", "Bash", "Read", "Edit", "Grep", "Write"))
            inp: dict[str, Any] = {"command": f"pytest -q tests/test_{turn % 50}.py"}
            if name == "Write":
                inp = {"file_path": f"/home/dev/app/gen_{turn}.py",
                       "content": output[: rng.randint(2_000, 40_000)]}
            elif name != "Bash":
                inp = {"file_path": f"/home/dev/app/m{turn % 40}.py", "pattern": "retry",
                       "old_string": "a", "new_string": "b\nc"}
            rows = [
                _line("assistant", ts, requestId=req, message={
                    "id": msg, "model": "claude-sonnet-4-5", "role": "assistant",
                    "content": [{"type": "text", "text": "Next I will look at the tests."}],
                    "usage": usage}),
                _line("assistant", ts + 1, requestId=req, message={
                    "id": msg, "model": "claude-sonnet-4-5", "role": "assistant",
                    "content": [{"type": "tool_use", "id": tool, "name": name, "input": inp}],
                    "usage": {**usage, "output_tokens": rng.randint(20, 900)}}),
                _line("user", ts + 3, toolUseResult={
                    "stdout": output[: rng.randint(200, 8_000)], "stderr": "", "interrupted": False},
                      message={"role": "user", "content": [{
                          "type": "tool_result", "tool_use_id": tool, "is_error": turn % 9 == 0,
                          "content": output[: rng.randint(200, 8_000)]}]}),
            ]
            if turn % 25 == 0:
                rows.append({"type": "file-history-snapshot", "messageId": msg, "snapshot": {}})
            for row in rows:
                text = json.dumps(row) + "\n"
                fh.write(text)
                written += len(text)
            ts += 5
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--publish", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{SID}.jsonl"
        size = write_transcript(path, args.mb)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        report = import_paths([path], None)
        elapsed = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        totals = report.totals()
        print(f"file {size / 1e6:.1f} MB, {totals['lines']} lines -> {totals['events_total']} events "
              f"({totals['usage_lines_folded']} usage lines folded)")
        print(f"map+validate: {elapsed:.2f} s, {totals['lines'] / elapsed:,.0f} lines/s, "
              f"{size / 1e6 / elapsed:.1f} MB/s, {totals['events_total'] / elapsed:,.0f} events/s")
        print(f"peak RSS {rss_after / 1024:.0f} MiB (before import {rss_before / 1024:.0f} MiB)")
        if args.publish:
            publish(path, Path(tmp), totals["events_total"])
    return 0


def publish(path: Path, tmp: Path, expected: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from pipeline.settings import load_settings
    from producers.publisher import EventPublisher

    settings = load_settings(spool={"dir": tmp / "spool"})
    topic = f"bench.import.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result()
    try:
        started = time.perf_counter()
        with EventPublisher(settings, "bench-import", topic=topic) as publisher:
            report = import_paths([path], publisher, flush_timeout=300)
        elapsed = time.perf_counter() - started
        print(f"import to Kafka via spool: {report.published} events in {elapsed:.2f} s "
              f"({report.published / elapsed:,.0f} events/s), undelivered {report.undelivered}")
        assert report.published == expected
    finally:
        admin.delete_topics([topic])


if __name__ == "__main__":
    sys.exit(main())
