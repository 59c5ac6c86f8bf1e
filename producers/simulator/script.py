"""A generated session (its steps) and the ground truth that lets tests account for every payload.

Truth is kept at two levels. Per step: the event types the collector is expected to publish for
that payload (``EXPECTED_BY_HOOK`` and the tool rules in ``session``), the canary secrets it
carries, its token usage; summing the steps actually sent gives exact counts even when a run is
cut short. Per session: the scenario facts (test outcomes, compile errors, memory series) and
the failure patterns a complete session should raise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from producers.simulator.spec import ScenarioSpec

EXPECTED_BY_HOOK: dict[str, tuple[str, ...]] = {
    "SessionStart": ("session.started",),
    "SessionEnd": ("session.ended",),
    "UserPromptSubmit": ("user.prompt",),
    "Notification": ("notification",),
    "PreToolUse": (),
    "Stop": ("agent.state.transition",),
    "SubagentStart": ("agent.state.transition",),
    "SubagentStop": ("agent.state.transition",),
}
"""Events the collector publishes per hook that is not a finished tool call (its hooks mapping;
the tool calls' events are decided where the call is built). Change it here if that moves."""


@dataclass(frozen=True)
class LlmUsage:
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class Canary:
    kind: str
    value: str
    where: str
    """The payload field that carries it, e.g. ``PreToolUse Bash tool_input.command``."""


@dataclass(frozen=True)
class Step:
    channel: str
    """``hook`` (a Claude Code hook JSON) or ``otlp`` (an OTLP/JSON logs request)."""
    body: dict[str, Any]
    pause_before_s: float = 0.0
    """Real seconds this session stays silent before the step (a stall)."""
    expect: tuple[str, ...] = ()
    canaries: tuple[Canary, ...] = ()
    llm: LlmUsage | None = None

    @property
    def label(self) -> str:
        if self.channel == "otlp":
            return "otlp:api_request"
        return f"hook:{self.body.get('hook_event_name')}"


@dataclass
class SessionTruth:
    session_id: str
    language: str
    spec: ScenarioSpec
    agents: list[dict[str, str]] = field(default_factory=list)
    tests: list[dict[str, str]] = field(default_factory=list)
    """Test runs in order: target and outcome (passed/failed)."""
    builds: list[str] = field(default_factory=list)
    """Compile/build outcomes in order (success/failure)."""
    memory_mib: dict[str, list[float]] = field(default_factory=dict)
    """Command -> peak memory of each run, in MiB."""
    stalls_s: list[float] = field(default_factory=list)
    expected_patterns: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["spec"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["spec"].items()}
        return out


@dataclass
class SessionScript:
    session_id: str
    steps: list[Step]
    truth: SessionTruth


@dataclass
class Accounting:
    """What was actually sent, summed step by step."""

    payloads: Counter[str] = field(default_factory=Counter)
    tools: Counter[str] = field(default_factory=Counter)
    expected_events: Counter[str] = field(default_factory=Counter)
    canaries: list[dict[str, str]] = field(default_factory=list)
    llm: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    sessions_started: int = 0
    sessions_completed: int = 0
    session_truth: list[dict[str, Any]] = field(default_factory=list)

    def add(self, session_id: str, step: Step) -> None:
        self.payloads[step.label] += 1
        if step.channel == "hook" and step.body.get("hook_event_name") == "PostToolUse":
            self.tools[str(step.body.get("tool_name"))] += 1
        self.expected_events.update(step.expect)
        for canary in step.canaries:
            self.canaries.append({"session_id": session_id, "kind": canary.kind,
                                  "value": canary.value, "where": canary.where})
        if step.llm is not None:
            self.llm.update(requests=1, input_tokens=step.llm.input_tokens,
                            output_tokens=step.llm.output_tokens,
                            cache_read_tokens=step.llm.cache_read_tokens,
                            cache_creation_tokens=step.llm.cache_creation_tokens)
            self.cost_usd += step.llm.cost_usd

    def complete(self, truth: SessionTruth) -> None:
        self.sessions_completed += 1
        self.session_truth.append(truth.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions_started": self.sessions_started,
            "sessions_completed": self.sessions_completed,
            "payloads": dict(sorted(self.payloads.items())),
            "payloads_total": sum(self.payloads.values()),
            "tool_calls": dict(sorted(self.tools.items())),
            "expected_events": dict(sorted(self.expected_events.items())),
            "expected_events_total": sum(self.expected_events.values()),
            "llm": {**dict(self.llm), "cost_usd": round(self.cost_usd, 6)},
            "canaries": self.canaries,
            "sessions": self.session_truth,
        }


def account(scripts: list[SessionScript]) -> Accounting:
    """Ground truth of complete scripts (what a run that sends all of them must account for)."""
    acc = Accounting()
    for script in scripts:
        acc.sessions_started += 1
        for step in script.steps:
            acc.add(script.session_id, step)
        acc.complete(script.truth)
    return acc
