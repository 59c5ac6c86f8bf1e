"""Hook JSON -> events: every hook type, old payloads, ids, joins, and a fuzz that nothing crashes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import model
from pipeline.serde import AvroSerde
from pipeline.validation import validate_event
from producers.collector.hooks import (
    HookContext,
    HookPayloadError,
    HookState,
    expire_pending,
    map_hook,
)

CASES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "claude_code_hooks.json").read_text())
T0 = 1_760_000_000_000_000
SERDE = AvroSerde()


def ctx(t: int = T0, delivery: str | None = None) -> HookContext:
    return HookContext(received_us=t, delivery_id=delivery)


def one(name: str, state: HookState | None = None, t: int = T0) -> list[dict[str, Any]]:
    return map_hook(CASES[name], ctx(t), state or HookState())


def body(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event["payload"][1])


def check(event: dict[str, Any]) -> None:
    """Every mapped event passes the contract and survives an Avro round trip unchanged."""
    validate_event(event, now_us=T0)
    assert SERDE.decode_event(SERDE.encode_event(event)) == event


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_payload_maps_to_valid_events(name: str) -> None:
    events = one(name)
    for event in events:
        check(event)
        assert event["session_id"] == CASES[name]["session_id"]
        assert event["source"] == "hook" and event["agent"] == "claude-code"
        assert event["timestamp"] == T0
        assert event["metadata"]["hook"] == CASES[name]["hook_event_name"]


EXPECTED_TYPES = {
    "session_start": ["session.started"],
    "user_prompt": ["user.prompt"],
    "pre_bash": [],
    "post_bash_test": ["command.executed", "test.executed"],
    "post_bash_failure": ["command.executed", "build.completed"],
    "post_bash_plain": ["command.executed"],
    "pre_edit": [],
    "post_edit": ["file.write"],
    "post_multiedit": ["file.write"],
    "post_write_create": ["file.write"],
    "post_notebook": ["file.write"],
    "post_read": ["file.read"],
    "post_grep": ["file.search"],
    "post_glob": ["file.search"],
    "post_webfetch": ["network.request"],
    "post_websearch": ["network.request"],
    "pre_task": ["agent.task.started"],
    "subagent_start": ["agent.state.transition"],
    "subagent_stop": ["agent.state.transition"],
    "post_task": ["agent.task.completed"],
    "post_agent_failure": ["agent.task.failed"],
    "post_mcp": ["other"],
    "notification": ["notification"],
    "pre_compact": ["agent.state.transition"],
    "stop": ["agent.state.transition"],
    "stop_failure": ["agent.task.failed", "agent.state.transition"],
    "session_end": ["session.ended"],
    "unknown_hook": ["other"],
    "old_pre_bash": [],
    "old_post_bash": ["command.executed", "test.executed"],
    "old_post_edit": ["file.write"],
    "old_post_write": ["file.write"],
    "old_notification": ["notification"],
    "old_stop": ["agent.state.transition"],
    "old_session_start": ["session.started"],
    "minimal_post_unknown_tool": ["other"],
}


def test_expected_event_types_cover_every_case() -> None:
    assert set(EXPECTED_TYPES) == set(CASES)
    for name, types in EXPECTED_TYPES.items():
        assert [e["event_type"] for e in one(name)] == types, name


def test_session_start_and_end() -> None:
    state = HookState()
    [start] = one("session_start", state)
    assert body(start)["reason"] == "startup"
    assert body(start)["model"] == "claude-sonnet-4-5"
    assert body(start)["cwd"] == "/home/dev/app"
    assert body(start)["transcript_path"].endswith(".jsonl")
    [end] = one("session_end", state, t=T0 + 90_000_000)
    assert body(end)["reason"] == "prompt_input_exit"
    assert body(end)["duration_ms"] == 90_000


def test_user_prompt_is_counted_and_cut_never_whole() -> None:
    payload = dict(CASES["user_prompt"], prompt="x" * 5000)
    [event] = map_hook(payload, ctx(), HookState())
    assert body(event)["prompt_length"] == 5000
    assert len(body(event)["prompt_excerpt"]) <= 200


def test_bash_test_run() -> None:
    command, test = one("post_bash_test")
    cmd = body(command)
    assert cmd["binary"] == "pytest" and cmd["args"] == ["-q", "tests/test_app.py"]
    assert cmd["duration_ms"] == 1234 and cmd["cwd"] == "/home/dev/app"
    assert cmd["stdout_lines"] == 4 and cmd["stderr_lines"] == 0
    assert "1 failed" in cmd["stdout_excerpt"]
    t = body(test)
    assert (t["suite"], t["test_name"]) == ("pytest", "tests/test_app.py")
    # The output says a test failed: that wins over the (absent) exit code.
    assert t["outcome"] == "failed" and test["severity"] == "warning"
    assert test["metadata"]["tests.failed"] == "1" and test["metadata"]["tests.passed"] == "2"
    assert command["tool_use_id"] == test["tool_use_id"] == "toolu_01BashTest"


def test_bash_failure_is_a_failed_build_with_its_exit_code() -> None:
    command, build = one("post_bash_failure")
    assert body(command)["exit_code"] == 101
    assert body(command)["stderr_lines"] == 2
    assert command["severity"] == "warning"
    assert (body(build)["outcome"], body(build)["build_type"], body(build)["component"]) == (
        "failure", "cargo build", "app")
    assert build["severity"] == "error"


def test_bash_network_hosts() -> None:
    [command] = one("post_bash_plain")
    assert body(command)["network_requests"] == ["api.github.com"]
    assert body(command)["exit_code"] == 0


def test_output_excerpts_are_bounded() -> None:
    payload = json.loads(json.dumps(CASES["post_bash_plain"]))
    payload["tool_response"]["stdout"] = "line\n" * 100_000
    [command] = map_hook(payload, HookContext(received_us=T0, excerpt_chars=300), HookState())
    assert body(command)["stdout_lines"] == 100_000
    assert len(body(command)["stdout_excerpt"]) <= 300


def test_edit_counts_come_from_the_structured_patch() -> None:
    [event] = one("post_edit")
    assert (body(event)["lines_added"], body(event)["lines_removed"]) == (2, 1)
    assert body(event)["path"] == "/home/dev/app/app.py"


def test_multiedit_without_patch_counts_the_edits() -> None:
    [event] = one("post_multiedit")
    assert (body(event)["lines_added"], body(event)["lines_removed"]) == (2, 3)


def test_write_create_has_size_checksum_and_lines() -> None:
    [event] = one("post_write_create")
    b = body(event)
    assert b["lines_added"] == 2 and b["lines_removed"] == 0 and b["size_bytes"] == 27
    assert b["checksum_sha256"] == \
        "70a4a73daac5cad028202da8427e09abf14ec2e0f8ec08a38c627e9fa1854705"
    assert b["reason"] == "create"


def test_read_checksum_only_for_a_whole_file() -> None:
    [whole] = one("post_read")
    assert body(whole)["checksum_sha256"] is not None
    payload = json.loads(json.dumps(CASES["post_read"]))
    payload["tool_response"]["file"].update(startLine=5, numLines=1, totalLines=50)
    [part] = map_hook(payload, ctx(), HookState())
    assert body(part)["checksum_sha256"] is None
    assert part["metadata"]["lines_read"] == "1"


def test_searches() -> None:
    [grep] = one("post_grep")
    assert body(grep)["pattern"] == "def f" and body(grep)["files_matched"] == 2
    [glob] = one("post_glob")
    assert body(glob)["path"] == "/home/dev/app"  # no path given: the session's cwd
    assert body(glob)["duration_us"] == 12_000


def test_webfetch_keeps_the_path_not_the_query() -> None:
    [event] = one("post_webfetch")
    b = body(event)
    assert (b["protocol"], b["domain"], b["endpoint"]) == ("https", "docs.python.org",
                                                           "/3/library/json.html")
    assert "token" not in json.dumps(b)
    assert (b["status_code"], b["bytes_received"], b["duration_ms"]) == (200, 52311, 830)


def test_task_lifecycle_joins_on_tool_use_id_with_subagent_tokens() -> None:
    state = HookState()
    [started] = one("pre_task", state)
    [completed] = one("post_task", state, t=T0 + 47_000_000)
    assert started["task_id"] == completed["task_id"] == "toolu_01Task"
    assert body(started)["agent_name"] == "general-purpose"
    assert body(started)["input_hash"] is not None
    assert body(completed)["duration_ms"] == 46372
    meta = completed["metadata"]
    assert meta["tokens.total"] == "23418" and meta["tokens.output"] == "900"
    assert meta["tokens.cache_read"] == "21709" and meta["tool_uses"] == "6"


def test_agent_tool_is_a_task_too_and_an_interrupt_fails_it() -> None:
    [failed] = one("post_agent_failure")
    assert body(failed)["agent_name"] == "code-reviewer"
    assert body(failed)["error_type"] == "interrupted"
    assert failed["severity"] == "error"


def test_pre_and_post_join_for_the_duration_when_the_hook_has_none() -> None:
    state = HookState()
    assert one("pre_edit", state) == []
    assert "toolu_01Edit" in state.pending
    [event] = one("post_edit", state, t=T0 + 250_000)
    assert event["tool_use_id"] == "toolu_01Edit"
    assert not state.pending
    bash = json.loads(json.dumps(CASES["post_bash_plain"]))
    map_hook(dict(bash, hook_event_name="PreToolUse"), ctx(T0), state)
    [command] = map_hook(bash, ctx(T0 + 1_500_000), state)
    assert body(command)["duration_ms"] == 1500


def test_post_without_pre_is_still_complete() -> None:
    payload = dict(CASES["post_edit"], tool_use_id="toolu_never_seen")
    [event] = map_hook(payload, ctx(), HookState())
    check(event)
    assert body(event)["lines_added"] == 2


def test_post_without_tool_input_takes_it_from_the_pre() -> None:
    state = HookState()
    one("pre_bash", state)
    bare = {k: v for k, v in CASES["post_bash_test"].items() if k != "tool_input"}
    events = map_hook(bare, ctx(), state)
    assert body(events[0])["binary"] == "pytest"


def test_tool_event_ids_are_deterministic_so_retries_count_once() -> None:
    first = one("post_bash_test")
    again = one("post_bash_test", t=T0 + 5)
    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    assert len({e["event_id"] for e in first}) == 2


def test_delivery_ids_make_other_hooks_deterministic_and_distinct() -> None:
    a = map_hook(CASES["stop"], ctx(delivery="d1"), HookState())
    b = map_hook(CASES["stop"], ctx(delivery="d1"), HookState())
    c = map_hook(CASES["stop"], ctx(delivery="d2"), HookState())
    assert a[0]["event_id"] == b[0]["event_id"] != c[0]["event_id"]
    plain1 = map_hook(CASES["stop"], ctx(), HookState())
    plain2 = map_hook(CASES["stop"], ctx(), HookState())
    assert plain1[0]["event_id"] != plain2[0]["event_id"]


def test_state_transitions_follow_the_session() -> None:
    state = HookState()
    one("user_prompt", state)
    one("notification", state)
    [compact] = one("pre_compact", state)
    assert (body(compact)["from_state"], body(compact)["to_state"]) == ("waiting", "compacting")
    [stop] = one("stop", state)
    assert (body(stop)["from_state"], body(stop)["to_state"]) == ("compacting", "idle")
    failed, transition = one("stop_failure", state)
    assert body(failed)["error_type"] == "rate_limit" and "429" in body(failed)["error_message"]
    assert body(transition)["to_state"] == "error"


def test_subagent_transitions_carry_the_agent_id() -> None:
    [start] = one("subagent_start")
    [stop] = one("subagent_stop")
    assert start["task_id"] == stop["task_id"] == "a7f3c9"
    assert body(stop)["to_state"] == "stopped"


def test_unknown_hooks_and_tools_are_kept_as_other() -> None:
    [hook] = one("unknown_hook")
    assert body(hook)["name"] == "hook.ConfigChange"
    assert json.loads(body(hook)["json"])["file_path"] == "/home/dev/.claude/settings.json"
    [tool] = one("post_mcp")
    assert body(tool)["name"] == "tool.mcp__github__create_issue"
    assert json.loads(body(tool)["json"])["tool_response"] == {"number": 42}


def test_other_json_stays_small_for_huge_payloads() -> None:
    payload = dict(CASES["unknown_hook"], blob="y" * 1_000_000, items=list(range(10_000)))
    [event] = map_hook(payload, ctx(), HookState())
    check(event)
    assert len(body(event)["json"]) <= 16_000


@pytest.mark.parametrize("bad", [
    [], "text", 42, None, {}, {"session_id": "s"}, {"hook_event_name": "Stop"},
    {"session_id": "", "hook_event_name": "Stop"}, {"session_id": 5, "hook_event_name": "Stop"},
    {"session_id": "s", "hook_event_name": ["Stop"]},
])
def test_bodies_that_are_no_hook_are_refused_with_a_reason(bad: Any) -> None:
    with pytest.raises(HookPayloadError) as info:
        map_hook(bad, ctx(), HookState())
    assert info.value.kind.value == "malformed_request"
    assert "session_id" in str(info.value) or "hook_event_name" in str(info.value) \
        or "object" in str(info.value)


def test_evicted_pre_calls_become_unfinished_events() -> None:
    state = HookState(max_pending=2)
    for i in range(3):
        pre = dict(CASES["pre_edit"], tool_use_id=f"toolu_{i}")
        events = map_hook(pre, ctx(T0 + i), state)
    [unfinished] = events
    check(unfinished)
    assert body(unfinished)["name"] == "tool.unfinished"
    assert unfinished["metadata"]["tool"] == "Edit"
    assert set(state.pending) == {"toolu_1", "toolu_2"}


def test_overdue_pre_calls_expire_as_unfinished() -> None:
    state = HookState(pending_ttl_us=1_000_000)
    one("pre_bash", state)
    assert expire_pending(state, T0 + 500_000) == []
    [event] = expire_pending(state, T0 + 2_000_000)
    check(event)
    assert event["tool_use_id"] == "toolu_01BashTest"
    assert json.loads(body(event)["json"])["waited_ms"] == 2000
    assert not state.pending


def test_state_memory_is_bounded() -> None:
    state = HookState(max_sessions=3)
    for i in range(10):
        map_hook({"session_id": f"s{i}", "hook_event_name": "Stop"}, ctx(), state)
    assert list(state.sessions) == ["s7", "s8", "s9"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)
hook_names = st.sampled_from(["SessionStart", "SessionEnd", "UserPromptSubmit", "PreToolUse",
                              "PostToolUse", "PostToolUseFailure", "Notification", "Stop",
                              "StopFailure", "SubagentStart", "SubagentStop", "PreCompact",
                              "Whatever"])
tool_names = st.sampled_from(["Bash", "Edit", "MultiEdit", "Write", "NotebookEdit", "Read",
                              "Grep", "Glob", "WebFetch", "WebSearch", "Task", "Agent", "Zzz"])
field_names = st.sampled_from(["tool_input", "tool_response", "tool_use_id", "duration_ms",
                               "error", "is_interrupt", "prompt", "message", "source", "model",
                               "reason", "agent_id", "agent_type", "cwd", "trigger",
                               "notification_type", "stop_hook_active", "error_details"])


@settings(max_examples=300, deadline=None)
@given(name=hook_names, tool=tool_names, extra=st.dictionaries(field_names, json_values,
                                                               max_size=8),
       tool_input=st.dictionaries(st.sampled_from(["command", "file_path", "content", "edits",
                                                   "old_string", "new_string", "url", "pattern",
                                                   "prompt", "subagent_type", "new_source"]),
                                  json_values, max_size=5))
def test_any_shape_of_hook_maps_to_valid_events(name: str, tool: str, extra: dict[str, Any],
                                                 tool_input: dict[str, Any]) -> None:
    payload = {"tool_input": tool_input, **extra, "session_id": "s-fuzz",
               "hook_event_name": name, "tool_name": tool}
    state = HookState()
    for hook in ("PreToolUse", name):
        for event in map_hook(dict(payload, hook_event_name=hook), ctx(), state):
            check(event)
            assert event["event_type"] in model.EVENT_TYPES or event["event_type"] == "other"
