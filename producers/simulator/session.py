"""One simulated Claude Code session as the hook payloads and OTLP records it would send.

Pure and seeded: ``build_session(spec, seed, index)`` returns the same steps, byte for byte, for
the same arguments. Payload shapes follow Claude Code's hooks reference: every hook carries
session_id, transcript_path, cwd, permission_mode and hook_event_name; tool hooks add tool_name,
tool_input and tool_use_id, PostToolUse its tool_response, PostToolUseFailure its error and
is_interrupt; hooks fired inside a subagent add agent_id and agent_type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from producers.simulator.content import PROJECTS, TOOLCHAINS, Toolchain
from producers.simulator.otlp import api_request_logs
from producers.simulator.script import (
    EXPECTED_BY_HOOK,
    Canary,
    LlmUsage,
    SessionScript,
    SessionTruth,
    Step,
)
from producers.simulator.spec import LANGUAGES, ScenarioSpec, SimRandom

CLAUDE_CODE_VERSION = "2.1.30"
SUBAGENT_TYPES = {"planning": "Explore", "coding": "general-purpose", "testing": "test-runner",
                  "review": "code-reviewer"}
# $ per million tokens: input, output, cache read, cache write (list prices of the model family).
PRICES = {"sonnet": (3.0, 15.0, 0.30, 3.75), "haiku": (1.0, 5.0, 0.10, 1.25),
          "opus": (15.0, 75.0, 1.50, 18.75)}
MEMORY_GROWTH = 1.35
"""Per-run peak memory factor of the memory-growth episode (detectors look for >20%)."""


def _paths_with(value: Any, needle: str, prefix: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if needle in value:
            yield prefix or "."
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths_with(item, needle, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths_with(item, needle, f"{prefix}[{i}]")


class SessionBuilder:
    """Accumulates a session's steps; the episode methods are the scenario's vocabulary."""

    def __init__(self, spec: ScenarioSpec, *, seed: str | int, index: int) -> None:
        self.r = SimRandom(f"{seed}:{index}")
        self.spec = spec
        self.session_id = self.r.uuid()
        language = spec.language or self.r.rng.choice(LANGUAGES)
        self.tc: Toolchain = TOOLCHAINS[language]
        project = self.r.rng.choice(PROJECTS)
        self.cwd = f"/home/dev/{project}"
        self.transcript = f"/home/dev/.claude/projects/-home-dev-{project}/{self.session_id}.jsonl"
        self.steps: list[Step] = []
        self.truth = SessionTruth(self.session_id, language, spec)
        self.secrets: dict[str, str] = {}
        self.agent: tuple[str, str] | None = None
        self.prompt_id = self.r.uuid()
        self.calls_since_llm = 0
        self.context_tokens = self.r.rng.randint(8_000, 20_000)
        self.pending_pause_s = 0.0
        """A stall: the next step waits this long (real time) before it is sent."""

    # -- primitives ------------------------------------------------------------------------

    def _canaries(self, body: dict[str, Any]) -> tuple[Canary, ...]:
        text = json.dumps(body)
        found: list[Canary] = []
        for kind, value in self.secrets.items():
            if value in text:
                label = f"{body.get('hook_event_name')} {body.get('tool_name') or ''}".strip()
                found += [Canary(kind, value, f"{label} {path}") for path in _paths_with(body, value)]
        return tuple(found)

    def hook(self, event: str, *, expect: tuple[str, ...] | None = None, pause_s: float = 0.0,
             **fields: Any) -> None:
        body: dict[str, Any] = {
            "session_id": self.session_id, "transcript_path": self.transcript, "cwd": self.cwd,
            "permission_mode": "default", "hook_event_name": event,
        }
        if self.agent is not None:
            body["agent_id"], body["agent_type"] = self.agent
        body.update(fields)
        pause_s, self.pending_pause_s = pause_s + self.pending_pause_s, 0.0
        self.steps.append(Step("hook", body, pause_s,
                               EXPECTED_BY_HOOK.get(event, ()) if expect is None else expect,
                               self._canaries(body)))

    def tool(self, name: str, tool_input: dict[str, Any], response: Any = None, *,
             error: str | None = None, expect: tuple[str, ...] = (),
             pre_expect: tuple[str, ...] = ()) -> str:
        tool_use_id = self.r.tool_use_id()
        self.hook("PreToolUse", expect=pre_expect, tool_name=name, tool_input=tool_input,
                  tool_use_id=tool_use_id)
        if error is None:
            self.hook("PostToolUse", expect=expect, tool_name=name, tool_input=tool_input,
                      tool_response=response if response is not None else {},
                      tool_use_id=tool_use_id)
        else:
            self.hook("PostToolUseFailure", expect=expect, tool_name=name, tool_input=tool_input,
                      tool_use_id=tool_use_id, error=error, is_interrupt=False)
        self.calls_since_llm += 1
        if self.calls_since_llm >= self.spec.turns_per_llm_request:
            self.llm()
        return tool_use_id

    def llm(self) -> None:
        self.calls_since_llm = 0
        rng = self.r.rng
        model = self.spec.model
        if self.agent is not None and self.agent[1] == "Explore":
            model = "claude-haiku-4-5-20251001"
        family = next((f for f in PRICES if f in model), "sonnet")
        p_in, p_out, p_read, p_write = PRICES[family]
        inp, out = rng.randint(3, 60), rng.randint(40, 1500)
        created = rng.choice((0, 0, rng.randint(200, 4000)))
        read = self.context_tokens
        self.context_tokens += created + out
        cost = (inp * p_in + out * p_out + read * p_read + created * p_write) / 1_000_000
        usage = LlmUsage(model, inp, out, read, created, round(cost, 6))
        body = api_request_logs(
            session_id=self.session_id, prompt_id=self.prompt_id, request_id=self.r.request_id(),
            usage=usage, duration_ms=rng.randint(1200, 14000), time_unix_nano=0,
            version=CLAUDE_CODE_VERSION, user_id="sim-" + self.session_id[:8])
        self.steps.append(Step("otlp", body, expect=("llm.request",), llm=usage))

    # -- tools -----------------------------------------------------------------------------

    def bash(self, command: str, *, stdout: str = "", stderr: str = "", exit_code: int = 0,
             kind: str | None = None, description: str = "") -> None:
        expect = ("command.executed",) + (("test.executed",) if kind == "test" else
                                          ("build.completed",) if kind == "build" else ())
        tool_input = {"command": command, "description": description or "Run a command",
                      "timeout": 120000}
        if exit_code == 0:
            self.tool("Bash", tool_input, {"stdout": stdout, "stderr": stderr,
                                           "interrupted": False, "isImage": False}, expect=expect)
        else:
            self.tool("Bash", tool_input, error=f"Exit code {exit_code}\n{stderr}{stdout}".rstrip(),
                      expect=expect)

    def read(self, path: str, content: str | None = None) -> None:
        text = content if content is not None else f"# {path}\n" + "x = 1\n" * self.r.rng.randint(5, 80)
        lines = text.count("\n")
        self.tool("Read", {"file_path": f"{self.cwd}/{path}"}, {"type": "text", "file": {
            "filePath": f"{self.cwd}/{path}", "content": text, "numLines": lines, "startLine": 1,
            "totalLines": lines}}, expect=("file.read",))

    def look_around(self) -> None:
        if self.r.rng.random() < 0.5:
            self.read(self.r.rng.choice(self.tc.src))
        else:
            self.search()

    def search(self) -> None:
        if self.r.rng.random() < 0.5:
            files = [f"{self.cwd}/{p}" for p in self.tc.src[: self.r.rng.randint(1, 4)]]
            self.tool("Grep", {"pattern": self.r.rng.choice(("retry", "def handle", "TODO")),
                               "path": self.cwd, "output_mode": "files_with_matches"},
                      {"mode": "files_with_matches", "filenames": files, "numFiles": len(files)},
                      expect=("file.search",))
        else:
            files = [f"{self.cwd}/{p}" for p in self.tc.src]
            self.tool("Glob", {"pattern": "**/*." + self.tc.src[0].rsplit(".", 1)[1]},
                      {"filenames": files, "numFiles": len(files), "durationMs": 4,
                       "truncated": False}, expect=("file.search",))

    def edit(self, path: str | None = None) -> None:
        path = path or self.r.rng.choice(self.tc.src)
        n = self.r.rng.randint(1, 12)
        old, new = "retry = 1\n", "retry = 3\n" + "# handled\n" * n
        line = self.r.rng.randint(1, 300)
        self.tool("Edit", {"file_path": f"{self.cwd}/{path}", "old_string": old, "new_string": new,
                           "replace_all": False},
                  {"filePath": f"{self.cwd}/{path}", "oldString": old, "newString": new,
                   "structuredPatch": [{"oldStart": line, "oldLines": 1, "newStart": line,
                                        "newLines": n + 1,
                                        "lines": ["-retry = 1", "+retry = 3",
                                                  *["+# handled"] * n]}],
                   "userModified": False, "replaceAll": False}, expect=("file.write",))

    def write(self, path: str, content: str) -> None:
        self.tool("Write", {"file_path": f"{self.cwd}/{path}", "content": content},
                  {"type": "create", "filePath": f"{self.cwd}/{path}", "content": content,
                   "structuredPatch": []}, expect=("file.write",))

    def test_run(self, command: str, target: str, *, passed: bool) -> None:
        n_ok = self.r.rng.randint(5, 40)
        out = self.tc.test_output(n_ok if passed else n_ok - 1, 0 if passed else 1, target)
        self.bash(command, stdout=out, exit_code=0 if passed else self.tc.test_exit(), kind="test",
                  description="Run the tests")
        self.truth.tests.append({"target": command, "outcome": "passed" if passed else "failed"})

    def build(self, *, ok: bool) -> None:
        path = self.r.rng.choice(self.tc.src)
        if ok:
            self.bash(self.tc.build_cmd, stdout=self.tc.build_ok(), kind="build",
                      description="Build the project")
        else:
            self.bash(self.tc.build_cmd, stderr=self.tc.compile_error(path, self.r.rng.randint(5, 200)),
                      exit_code=self.tc.build_exit, kind="build", description="Build the project")
        self.truth.builds.append("success" if ok else "failure")

    # -- structure -------------------------------------------------------------------------

    def subagent(self, phase: str, number: int) -> None:
        agent_type = SUBAGENT_TYPES[phase]
        agent_id = "a" + self.r.chars("0123456789abcdef", 16)
        description = f"{phase} helper {number}"
        task_input = {"description": description, "subagent_type": agent_type,
                      "prompt": f"Help with the {phase} of this change; report back briefly."}
        tool_use_id = self.r.tool_use_id()
        self.hook("PreToolUse", expect=("agent.task.started",), tool_name="Task",
                  tool_input=task_input, tool_use_id=tool_use_id)
        self.hook("SubagentStart", agent_id=agent_id, agent_type=agent_type)
        parent_calls, self.calls_since_llm = self.calls_since_llm, 0
        self.agent = (agent_id, agent_type)
        self.truth.agents.append({"agent_id": agent_id, "agent_type": agent_type, "phase": phase})
        for _ in range(self.r.rng.randint(2, 4)):
            if phase in ("planning", "review"):
                self.look_around()
            elif phase == "coding":
                self.edit()
            else:
                self.test_run(self.tc.test_cmd, self.tc.test_file, passed=True)
        self.llm()
        self.hook("SubagentStop", stop_hook_active=False, agent_id=agent_id, agent_type=agent_type,
                  agent_transcript_path=self.transcript.replace(
                      ".jsonl", f"/subagents/agent-{agent_id}.jsonl"))
        self.agent = None
        self.calls_since_llm = parent_calls
        self.hook("PostToolUse", expect=("agent.task.completed",), tool_name="Task",
                  tool_input=task_input, tool_use_id=tool_use_id, tool_response={
                      "status": "completed", "content": [{"type": "text", "text": "Done."}],
                      "totalDurationMs": self.r.rng.randint(5000, 90000),
                      "totalTokens": self.r.rng.randint(5000, 60000),
                      "totalToolUseCount": 3})

    def prompt(self, text: str) -> None:
        self.prompt_id = self.r.uuid()
        self.hook("UserPromptSubmit", prompt=text)

    def stop(self) -> None:
        if self.calls_since_llm:
            self.llm()
        self.hook("Stop", stop_hook_active=False)


def build_session(spec: ScenarioSpec, *, seed: str | int, index: int) -> SessionScript:
    """The session number ``index`` of a run seeded with ``seed``."""
    from producers.simulator.episodes import play

    builder = SessionBuilder(spec, seed=seed, index=index)
    play(builder)
    return SessionScript(builder.session_id, builder.steps, builder.truth)
