"""The two truncation passes around redaction, and the enrichment defaults."""

from __future__ import annotations

import json
from typing import Any

from pipeline.model import new_event
from processors.enrich import enrich
from processors.truncation import (
    CUT_MARGIN,
    TRUNCATED_METADATA_KEY,
    marker,
    precut_event,
    truncate_event,
)


def cmd(**payload: Any) -> dict[str, Any]:
    return new_event("command.executed", "s", {"binary": "x", **payload})


def test_short_strings_are_untouched_and_the_event_is_the_same_object() -> None:
    ev = cmd(stdout_excerpt="ok", args=["a", "b"], cwd="/w")
    pre, info = precut_event(ev, 1024)
    out, paths = truncate_event(pre, 1024, info)
    assert out is ev and pre is ev and paths == [] and info.sizes == {}


def test_long_payload_string_is_precut_then_cut_with_the_original_size() -> None:
    text = "a" * 100_000
    ev = cmd(stdout_excerpt=text)
    pre, info = precut_event(ev, 1000)
    assert len(pre["payload"][1]["stdout_excerpt"]) == 1000 + CUT_MARGIN
    assert info.sizes == {"/payload/stdout_excerpt": 100_000}
    out, paths = truncate_event(pre, 1000, info)
    assert out["payload"][1]["stdout_excerpt"] == "a" * 1000 + marker(100_000)
    assert paths == ["/payload/stdout_excerpt"]
    assert out["metadata"][TRUNCATED_METADATA_KEY] == "/payload/stdout_excerpt"
    assert ev["payload"][1]["stdout_excerpt"] == text  # input not mutated
    assert TRUNCATED_METADATA_KEY not in ev["metadata"]


def test_precut_margin_is_dropped_even_when_redaction_shrank_the_text() -> None:
    # Redaction replacing a long secret by a short token must not pull the (unrecognised)
    # tail of the precut text below the bound.
    text = "s" * 500 + "P" * 300 + "t" * 10_000
    pre, info = precut_event(cmd(stdout_excerpt=text), 1000)
    cut = pre["payload"][1]["stdout_excerpt"]
    shrunk = cut.replace("P" * 300, "***TOKEN***")
    redacted = dict(pre)
    redacted["payload"] = (pre["payload"][0], {**pre["payload"][1], "stdout_excerpt": shrunk})
    out, _ = truncate_event(redacted, 1000, info)
    kept = out["payload"][1]["stdout_excerpt"].split("…[")[0]
    assert kept == shrunk[: len(shrunk) - CUT_MARGIN]
    assert 500 < len(kept) < 1000


def test_cut_respects_utf8_character_boundaries() -> None:
    text = "é" * 5000  # 2 bytes each
    out, _ = truncate_event(cmd(stdout_excerpt=text), 1001)
    kept = out["payload"][1]["stdout_excerpt"].split("…[")[0]
    assert kept == "é" * 500
    assert out["payload"][1]["stdout_excerpt"].endswith(marker(10_000))


def test_list_items_and_metadata_values_are_cut_individually() -> None:
    ev = cmd(args=["short", "b" * 5000, "c"])
    ev["metadata"] = {"git.branch": "main", "notes/long": "n" * 3000}
    pre, info = precut_event(ev, 1000)
    assert "/metadata/notes~1long" in info.sizes and "/metadata/notes~1long" not in info.cut
    out, paths = truncate_event(pre, 1000, info)
    assert paths == ["/payload/args/1", "/metadata/notes~1long"]
    assert out["payload"][1]["args"][0] == "short" and out["payload"][1]["args"][2] == "c"
    assert out["metadata"]["git.branch"] == "main"
    assert out["metadata"]["notes/long"].startswith("n" * 1000 + "…[truncated")


def test_other_event_json_stays_json() -> None:
    doc = json.dumps({"k": list(range(5000))})
    ev = new_event("custom.thing", "s", {"name": "custom.thing", "json": doc})
    pre, info = precut_event(ev, 512)
    out, _ = truncate_event(pre, 512, info)
    body = json.loads(out["payload"][1]["json"])
    assert body["agentwatch_truncated"] is True and body["original_bytes"] == len(doc)
    assert body["excerpt"].startswith(doc[:200])


def test_enrich_fills_agent_from_metadata_when_payload_has_none() -> None:
    ev = cmd()
    ev["agent"] = "unknown"
    ev["metadata"] = {"agent": "aider"}
    assert enrich(ev)["agent"] == "aider"
    assert ev["agent"] == "unknown"


def test_enrich_keeps_what_the_producer_set() -> None:
    ev = new_event("agent.task.failed", "s", {"agent_name": "sub"}, agent="claude-code",
                   severity="debug")
    assert enrich(ev) is ev  # debug is explicit (not the default): never overridden


def test_enrich_infers_missing_severity() -> None:
    ev = new_event("agent.task.failed", "s", {"agent_name": "sub"})
    ev["severity"] = None
    assert enrich(ev)["severity"] == "error"
