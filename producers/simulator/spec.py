"""Scenario knobs, named presets, and the seeded randomness every generated value comes from."""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field, fields, replace
from typing import Any

PHASES = ("planning", "coding", "testing", "review")
LANGUAGES = ("python", "rust", "typescript", "go")
SECRET_KINDS = ("anthropic", "aws", "github", "password")


@dataclass(frozen=True)
class ScenarioSpec:
    """What one simulated session contains; every episode is opt-in so tests can script exactly."""

    phases: tuple[str, ...] = PHASES
    language: str | None = None
    """python, rust, typescript or go; None picks one from the seed."""
    agents: int = 1
    """Agents in the session: the main one plus ``agents - 1`` subagents run through the Task tool."""
    edits: int = 3
    """File edits in the coding phase."""
    reads: int = 3
    """Reads and searches in the planning phase."""
    failing_test_runs: int = 0
    """Test runs that fail (each followed by a fix) before the passing one."""
    compile_errors: int = 0
    """Failed compiles in a row (each followed by an edit) before the build succeeds."""
    flaky_test: bool = False
    """One test run pass, fail, pass with no change in between."""
    memory_growth_runs: int = 0
    """Runs of the same command whose peak memory grows ~35% per run (``/usr/bin/time -v``)."""
    retry_storm: int = 0
    """The same failing command repeated unchanged this many times."""
    stall_s: float = 0.0
    """A real pause (waiting on a permission prompt) of this many seconds mid-session."""
    secrets: tuple[str, ...] = ()
    """Canary secrets to plant: any of anthropic, aws, github, password."""
    turns_per_llm_request: int = 2
    """Tool calls per model response (one OTLP api_request each)."""
    model: str = "claude-sonnet-4-5-20250929"

    def __post_init__(self) -> None:
        unknown = [p for p in self.phases if p not in PHASES]
        bad_secrets = [s for s in self.secrets if s not in SECRET_KINDS]
        if unknown or bad_secrets or self.agents < 1 or (self.language not in (None, *LANGUAGES)):
            raise ValueError(
                f"bad scenario: phases {unknown}, secrets {bad_secrets}, agents {self.agents}, "
                f"language {self.language}")

    def with_overrides(self, **overrides: Any) -> ScenarioSpec:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in known and v is not None})


PRESETS: dict[str, ScenarioSpec] = {
    "clean": ScenarioSpec(),
    "failing_tests": ScenarioSpec(failing_test_runs=2),
    "compile_loop": ScenarioSpec(compile_errors=5),
    "flaky": ScenarioSpec(flaky_test=True),
    "memory_growth": ScenarioSpec(memory_growth_runs=4),
    "retry_storm": ScenarioSpec(retry_storm=4),
    "stall": ScenarioSpec(stall_s=5.0),
    "secrets": ScenarioSpec(secrets=SECRET_KINDS),
    "multi_agent": ScenarioSpec(agents=3),
    "everything": ScenarioSpec(agents=3, failing_test_runs=2, compile_errors=5, flaky_test=True,
                               memory_growth_runs=4, retry_storm=4, secrets=SECRET_KINDS),
}
"""Each preset shows one behaviour on top of a clean session (``everything`` shows them all)."""


def realistic_spec(rng: random.Random, base: ScenarioSpec | None = None) -> ScenarioSpec:
    """A mixed workload: most sessions are ordinary, some loop, flake, leak or leak secrets."""
    base = base or ScenarioSpec()
    return replace(
        base,
        agents=base.agents if base.agents > 1 else rng.choice((1, 1, 2, 3)),
        edits=rng.randint(2, 6),
        reads=rng.randint(2, 6),
        failing_test_runs=rng.choice((0, 0, 1, 1, 2)),
        compile_errors=rng.choice((0,) * 8 + (4, 5)),
        flaky_test=rng.random() < 0.1,
        memory_growth_runs=4 if rng.random() < 0.1 else 0,
        retry_storm=4 if rng.random() < 0.05 else 0,
        secrets=tuple(k for k in SECRET_KINDS if rng.random() < 0.05),
    )


@dataclass
class SimRandom:
    """Seeded values; the same (seed, stream) gives the same sequence in every Python 3 process."""

    seed: str
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # str seeds are hashed with SHA-512: stable

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def tool_use_id(self) -> str:
        return "toolu_01" + self.chars(string.ascii_letters + string.digits, 22)

    def request_id(self) -> str:
        return "req_011C" + self.chars(string.ascii_letters + string.digits, 20)

    def canary(self, kind: str) -> str:
        """Secrets shaped like real ones (and like the redaction rules expect), never valid."""
        b64url = string.ascii_letters + string.digits + "-_"
        if kind == "anthropic":
            return "sk-ant-api03-" + self.chars(b64url, 93) + "AA"
        if kind == "aws":
            return "AKIA" + self.chars(string.ascii_uppercase + "234567", 16)
        if kind == "aws_secret":
            return self.chars(string.ascii_letters + string.digits + "/+", 40)
        if kind == "github":
            return "ghp_" + self.chars(string.ascii_letters + string.digits, 36)
        if kind == "password":
            return "Pw-" + self.chars(string.ascii_letters + string.digits, 14) + "!9"
        raise ValueError(f"unknown canary kind {kind!r}")
