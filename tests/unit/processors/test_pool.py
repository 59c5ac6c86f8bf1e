"""processors/pool.py: a batch processed by spawned pool processes equals the inline result."""

from __future__ import annotations

import os

from pipeline.model import new_event
from pipeline.serde import AvroSerde
from pipeline.settings import load_settings
from processors.deadletters import SourceMeta
from processors.pool import INLINE_BELOW, ProcessingPool
from processors.validate import CleanEvent, DeadLetterOut, build_processor

GITHUB_TOKEN = "ghp_" + "Zq8Xw3Lk9Vb2Nm4Pr6Ts1Yu7Ei5Oa0Hc3Jd8"


def _items(n: int) -> list[tuple[bytes, SourceMeta]]:
    serde = AvroSerde()
    items = []
    for i in range(n):
        if i % 10 == 3:
            raw = b"\x00not avro %d" % i
        else:
            args = [f"--token={GITHUB_TOKEN}"] if i % 7 == 0 else [f"test_{i}.py"]
            raw = serde.encode_event(new_event("command.executed", f"s{i % 5}",
                                               {"binary": "pytest", "args": args, "exit_code": 0}))
        items.append((raw, SourceMeta("ingest", i % 3, i, f"s{i % 5}".encode())))
    return items


def _comparable(outcome: object) -> tuple[str, bytes | None, str]:
    if isinstance(outcome, CleanEvent):
        return ("event", outcome.key, outcome.event_id)
    assert isinstance(outcome, DeadLetterOut)
    return ("dead_letter", outcome.key, outcome.kind.value)


def test_pool_outcomes_equal_inline_outcomes_in_order() -> None:
    settings = load_settings()
    inline = build_processor(settings)
    items = _items(INLINE_BELOW * 3 + 5)
    pool = ProcessingPool(settings, 2, inline)
    try:
        pooled = pool.process(items)
        pids = pool.pids()
    finally:
        pool.close()
    expected = [inline.process(raw, meta) for raw, meta in items]
    assert [_comparable(o) for o in pooled] == [_comparable(o) for o in expected]
    assert {o.event_id for o in pooled if isinstance(o, CleanEvent)} and all(
        GITHUB_TOKEN.encode() not in o.value for o in pooled)
    # The pool runs two spawned processes of its own, neither of them this one.
    assert len(pids) == 2 and os.getpid() not in pids
