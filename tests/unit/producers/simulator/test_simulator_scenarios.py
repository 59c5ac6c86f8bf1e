from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from producers.simulator.otlp import to_protobuf
from producers.simulator.run import generate, session_factory
from producers.simulator.script import EXPECTED_BY_HOOK, SessionScript, Step, account
from producers.simulator.spec import PRESETS, SECRET_KINDS, ScenarioSpec

COMMON = ("session_id", "transcript_path", "cwd", "permission_mode", "hook_event_name")


def _hooks(script: SessionScript) -> list[dict[str, Any]]:
    return [s.body for s in script.steps if s.channel == "hook"]


def _tool_posts(script: SessionScript, tool: str | None = None) -> list[dict[str, Any]]:
    return [b for b in _hooks(script)
            if b["hook_event_name"] in ("PostToolUse", "PostToolUseFailure")
            and (tool is None or b["tool_name"] == tool)]


def _digest(scripts: list[SessionScript]) -> str:
    blob = json.dumps([[(s.channel, s.pause_before_s, s.body) for s in sc.steps] for sc in scripts],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def test_same_seed_same_sessions() -> None:
    first = generate(4, "everything", seed="abc")
    again = generate(4, "everything", seed="abc")
    assert _digest(first) == _digest(again)
    assert [s.truth.to_json() for s in first] == [s.truth.to_json() for s in again]
    other = generate(4, "everything", seed="abd")
    assert {s.session_id for s in first}.isdisjoint({s.session_id for s in other})
    assert len({s.session_id for s in first}) == 4


def test_determinism_holds_across_processes() -> None:
    code = ("import hashlib, json; from producers.simulator.run import generate; "
            "s = generate(3, 'realistic', seed=11); "
            "print(hashlib.sha256(json.dumps([[x.body for x in sc.steps] for sc in s], "
            "sort_keys=True).encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout for h in (1, 2)}
    assert len(outs) == 1


def test_hook_payloads_have_claude_codes_shape() -> None:
    for script in generate(3, "everything", seed=1):
        open_calls: dict[str, str] = {}
        for body in _hooks(script):
            assert all(body.get(k) for k in COMMON), body
            assert body["session_id"] == script.session_id
            event = body["hook_event_name"]
            if event == "PreToolUse":
                assert body["tool_use_id"] not in open_calls
                open_calls[body["tool_use_id"]] = body["tool_name"]
                assert isinstance(body["tool_input"], dict)
            elif event in ("PostToolUse", "PostToolUseFailure"):
                # Every result follows its call, same tool.
                assert open_calls.pop(body["tool_use_id"]) == body["tool_name"]
                if event == "PostToolUse":
                    assert "tool_response" in body
                else:
                    assert body["error"] and body["is_interrupt"] is False
        assert open_calls == {}
        events = [b["hook_event_name"] for b in _hooks(script)]
        assert events[0] == "SessionStart" and events[-1] == "SessionEnd"


def test_clean_session_has_no_trouble() -> None:
    script = generate(1, "clean", seed=3)[0]
    truth = script.truth
    assert truth.expected_patterns == [] and truth.builds == [] and truth.memory_mib == {}
    assert [t["outcome"] for t in truth.tests] == ["passed"]
    assert not any(s.canaries for s in script.steps)
    assert not any(b["hook_event_name"] == "PostToolUseFailure" for b in _hooks(script))
    assert not any(s.pause_before_s for s in script.steps)


@pytest.mark.parametrize("language", ["python", "rust", "typescript", "go"])
def test_compile_loop(language: str) -> None:
    script = generate(1, "compile_loop", seed=5, language=language)[0]
    assert script.truth.builds == ["failure"] * 5 + ["success"]
    assert "compile_fix_loop" in script.truth.expected_patterns
    posts = _tool_posts(script)
    builds = [i for i, b in enumerate(posts) if "build.completed" in _expect_of(script, b)]
    assert len(builds) == 6
    for i in builds[:5]:
        assert posts[i]["hook_event_name"] == "PostToolUseFailure"
        assert re.match(r"Exit code [1-9]", posts[i]["error"])
        assert posts[i + 1]["tool_name"] == "Edit"  # a fix attempt after every error
    assert posts[builds[5]]["hook_event_name"] == "PostToolUse"


def _expect_of(script: SessionScript, body: dict[str, Any]) -> tuple[str, ...]:
    return next(s.expect for s in script.steps if s.body is body)


def test_failing_then_passing_tests() -> None:
    script = generate(1, "failing_tests", seed=8)[0]
    assert [t["outcome"] for t in script.truth.tests] == ["failed", "failed", "passed"]
    posts = _tool_posts(script)
    runs = [i for i, b in enumerate(posts) if "test.executed" in _expect_of(script, b)]
    assert [posts[i]["hook_event_name"] for i in runs] == [
        "PostToolUseFailure", "PostToolUseFailure", "PostToolUse"]
    assert all(posts[i + 1]["tool_name"] == "Edit" for i in runs[:2])
    assert "passed" in posts[runs[2]]["tool_response"]["stdout"]


def test_flaky_test_changes_outcome_without_edits() -> None:
    script = generate(1, "flaky", seed=9, language="python")[0]
    flaky = [t for t in script.truth.tests if "test_expiry" in t["target"]]
    assert [t["outcome"] for t in flaky] == ["passed", "failed", "passed"]
    posts = _tool_posts(script)
    idx = [i for i, b in enumerate(posts) if "test_expiry" in b["tool_input"].get("command", "")]
    assert idx == list(range(idx[0], idx[0] + 3))  # back to back: no write in between
    assert "flaky_test" in script.truth.expected_patterns


def test_memory_growth_series_is_in_the_output() -> None:
    script = generate(1, "memory_growth", seed=4)[0]
    (command, series), = script.truth.memory_mib.items()
    assert len(series) == 4 and all(b > a * 1.2 for a, b in itertools.pairwise(series))
    runs = [b for b in _tool_posts(script, "Bash") if b["tool_input"]["command"] == command]
    reported = [int(re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                              b["tool_response"]["stderr"]).group(1)) for b in runs]
    assert [round(k / 1024, 1) for k in reported] == series
    assert "memory_growth" in script.truth.expected_patterns


def test_retry_storm_repeats_one_failing_command_unchanged() -> None:
    script = generate(1, "retry_storm", seed=2)[0]
    posts = _tool_posts(script)
    failures = [i for i, b in enumerate(posts) if b["hook_event_name"] == "PostToolUseFailure"]
    assert len(failures) == 4 and failures == list(range(failures[0], failures[0] + 4))
    assert len({posts[i]["tool_input"]["command"] for i in failures}) == 1


def test_stall_is_a_real_pause_after_a_permission_prompt() -> None:
    script = generate(1, "stall", seed=6, stall_s=2.5)[0]
    paused = [i for i, s in enumerate(script.steps) if s.pause_before_s]
    assert len(paused) == 1 and script.steps[paused[0]].pause_before_s == 2.5
    before = script.steps[paused[0] - 1].body
    assert before["hook_event_name"] == "Notification"
    assert before["notification_type"] == "permission_prompt"
    assert script.truth.stalls_s == [2.5]


def test_secrets_are_planted_where_the_truth_says() -> None:
    from pipeline.redaction import Redactor

    script = generate(1, "secrets", seed=12)[0]
    truth = account([script]).to_json()
    kinds = {c["kind"] for c in truth["canaries"]}
    assert kinds == {*SECRET_KINDS, "aws_secret"}
    redactor = Redactor()
    planted = {c["value"] for c in truth["canaries"]}
    for step in script.steps:
        text = json.dumps(step.body)
        # A step lists exactly the canaries its payload carries.
        assert {v for v in planted if v in text} == {c.value for c in step.canaries}
    for value in {c["value"] for c in truth["canaries"]}:
        context = {"anthropic": "x-api-key: {}", "aws": "{}", "github": "{}",
                   "aws_secret": "AWS_SECRET_ACCESS_KEY={}", "password": "PGPASSWORD='{}'"}
        kind = next(c["kind"] for c in truth["canaries"] if c["value"] == value)
        redacted, rules = redactor.redact_text(context[kind].format(value))
        assert value not in redacted, (kind, rules)


def test_secrets_differ_between_sessions() -> None:
    a, b = generate(2, "secrets", seed=12)
    values = [{c.value for s in sc.steps for c in s.canaries} for sc in (a, b)]
    assert values[0].isdisjoint(values[1])


def test_subagents_are_marked_in_their_hooks() -> None:
    script = generate(1, "multi_agent", seed=13)[0]
    agents = script.truth.agents
    assert len(agents) == 2
    for agent in agents:
        inside = [b for b in _hooks(script) if b.get("agent_id") == agent["agent_id"]]
        assert inside[0]["hook_event_name"] == "SubagentStart"
        assert inside[-1]["hook_event_name"] == "SubagentStop"
        assert any(b["hook_event_name"] == "PostToolUse" for b in inside)
        assert all(b["agent_type"] == agent["agent_type"] for b in inside)
    tasks = _tool_posts(script, "Task")
    assert [t["tool_input"]["subagent_type"] for t in tasks] == [a["agent_type"] for a in agents]


def test_otlp_usage_matches_the_truth() -> None:
    from google.protobuf import json_format  # noqa: F401 - proves the protobuf path imports
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    script = generate(1, "clean", seed=14)[0]
    otlp = [s for s in script.steps if s.channel == "otlp"]
    assert otlp
    for step in otlp:
        assert step.llm is not None
        msg = ExportLogsServiceRequest.FromString(to_protobuf(step.body))
        record = msg.resource_logs[0].scope_logs[0].log_records[0]
        attrs = {a.key: a.value.string_value for a in record.attributes}
        assert record.body.string_value == "claude_code.api_request"
        assert attrs["session.id"] == script.session_id
        assert int(attrs["output_tokens"]) == step.llm.output_tokens
        assert int(attrs["cache_read_tokens"]) == step.llm.cache_read_tokens
        assert float(attrs["cost_usd"]) == pytest.approx(step.llm.cost_usd, abs=1e-6)


def test_accounting_counts_every_step() -> None:
    scripts = generate(5, "realistic", seed=21)
    truth = account(scripts).to_json()
    assert truth["payloads_total"] == sum(len(s.steps) for s in scripts)
    hooks = Counter(b["hook_event_name"] for s in scripts for b in _hooks(s))
    assert truth["payloads"] == {**{f"hook:{k}": v for k, v in hooks.items()},
                                 "otlp:api_request": truth["llm"]["requests"]}
    assert truth["expected_events"]["llm.request"] == truth["llm"]["requests"]
    assert truth["expected_events"]["session.started"] == 5
    assert truth["expected_events"]["user.prompt"] == hooks["UserPromptSubmit"]
    assert set(EXPECTED_BY_HOOK) >= {k for k in hooks if not k.startswith("PostToolUse")}
    assert truth["sessions_completed"] == 5 and len(truth["sessions"]) == 5


def test_realistic_mix_varies_but_overrides_win() -> None:
    specs = [s.truth.spec for s in generate(30, "realistic", seed=5)]
    assert len({(s.agents, s.compile_errors, s.failing_test_runs) for s in specs}) > 3
    assert {s.truth.spec.agents for s in generate(10, "realistic", seed=5, agents=3)} == {3}


def test_bad_scenarios_are_refused() -> None:
    with pytest.raises(ValueError):
        session_factory("nope")
    with pytest.raises(ValueError):
        ScenarioSpec(secrets=("pgp",))
    assert set(PRESETS) >= {"clean", "compile_loop", "flaky", "memory_growth", "stall", "secrets"}


def test_step_labels() -> None:
    assert Step("otlp", {}).label == "otlp:api_request"
    assert Step("hook", {"hook_event_name": "Stop"}).label == "hook:Stop"
