"""The simulator's Python API: pick a scenario, generate sessions, or send them and get the truth.

    scripts = generate(3, "compile_loop", seed=7)           # pure: steps + truth, nothing sent
    stats, truth = await simulate(Target.from_base("http://127.0.0.1:4318"), sessions=3,
                                  scenario="flaky", seed=7)  # sent, truth of what was accepted
"""

from __future__ import annotations

from typing import Any

from producers.simulator.driver import Driver, DriveStats, SessionFactory, Target
from producers.simulator.script import Accounting, SessionScript
from producers.simulator.session import build_session
from producers.simulator.spec import PRESETS, ScenarioSpec, SimRandom, realistic_spec

SCENARIOS = ("realistic", *PRESETS)


def session_factory(
    scenario: str | ScenarioSpec = "realistic", *, seed: str | int = 0, **overrides: Any,
) -> SessionFactory:
    """index -> the index-th session of the run; ``overrides`` set ScenarioSpec fields."""
    if isinstance(scenario, ScenarioSpec):
        fixed: ScenarioSpec | None = scenario.with_overrides(**overrides)
    elif scenario == "realistic":
        fixed = None
        base = ScenarioSpec().with_overrides(**overrides)
    elif scenario in PRESETS:
        fixed = PRESETS[scenario].with_overrides(**overrides)
    else:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")

    def make(index: int) -> SessionScript:
        if fixed is not None:
            return build_session(fixed, seed=seed, index=index)
        spec = realistic_spec(SimRandom(f"{seed}:{index}:spec").rng, base)
        # Overrides win over the mix: `--agents 3 --scenario realistic` means 3 agents.
        return build_session(spec.with_overrides(**overrides), seed=seed, index=index)

    return make


def generate(sessions: int, scenario: str | ScenarioSpec = "realistic", *, seed: str | int = 0,
             **overrides: Any) -> list[SessionScript]:
    make = session_factory(scenario, seed=seed, **overrides)
    return [make(i) for i in range(sessions)]


async def simulate(
    target: Target, *, sessions: int = 1, scenario: str | ScenarioSpec = "realistic",
    seed: str | int = 0, rate: float | None = None, duration_s: float | None = None,
    give_up_s: float = 60.0, **overrides: Any,
) -> tuple[DriveStats, Accounting]:
    """Send ``sessions`` concurrent sessions (one each, or repeatedly for ``duration_s``)."""
    driver = Driver(target, rate=rate, lanes=sessions, give_up_s=give_up_s)
    stats = await driver.run(session_factory(scenario, seed=seed, **overrides), duration_s)
    return stats, driver.accounting
