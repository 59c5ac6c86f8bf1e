"""The course of a simulated session: phases, and the scenario's episodes placed inside them.

planning reads and searches; coding edits, plants secrets, loops on compile errors and reruns
the leaky command; testing fails then passes, flakes, retries unchanged; review diffs and
commits. Subagents take one phase each; a stall waits on a permission prompt before testing.
"""

from __future__ import annotations

from producers.simulator.content import AREAS, INSTALL_FAILURE, PROMPTS, REVIEW_PROMPT, gnu_time_report
from producers.simulator.session import MEMORY_GROWTH, SessionBuilder


def _plant_secrets(b: SessionBuilder) -> None:
    kinds = b.spec.secrets
    if "anthropic" in kinds:
        key = b.secrets["anthropic"] = b.r.canary("anthropic")
        b.bash(f'curl -s https://api.anthropic.com/v1/models -H "x-api-key: {key}" '
               '-H "anthropic-version: 2023-06-01"',
               stdout='{"data":[{"id":"claude-sonnet-4-5"}]}\n', description="Check the API key")
    if "aws" in kinds:
        key_id = b.secrets["aws"] = b.r.canary("aws")
        secret = b.secrets["aws_secret"] = b.r.canary("aws_secret")
        env = f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\nAWS_REGION=eu-west-1\n"
        b.write(".env", env)
        b.read(".env", env)
    if "github" in kinds:
        token = b.secrets["github"] = b.r.canary("github")
        b.bash(f"git remote set-url origin https://x-access-token:{token}@github.com/acme/app.git",
               description="Point origin at the token URL")


def _plant_password(b: SessionBuilder) -> None:
    if "password" in b.spec.secrets:
        password = b.secrets["password"] = b.r.canary("password")
        b.bash(f"PGPASSWORD='{password}' psql -h db.internal -U app -c 'select count(*) from orders'",
               stdout=" count \n-------\n  1042\n(1 row)\n", description="Check the orders table")


def planning(b: SessionBuilder) -> None:
    for _ in range(b.spec.reads):
        b.look_around()


def coding(b: SessionBuilder) -> None:
    for _ in range(b.spec.edits):
        b.edit()
    _plant_secrets(b)
    if b.spec.compile_errors:
        for _ in range(b.spec.compile_errors):
            b.build(ok=False)
            b.edit()
        b.build(ok=True)
    cmd, peak = b.tc.bench_cmd, b.r.rng.randint(180_000, 260_000)
    for _ in range(b.spec.memory_growth_runs):
        seconds = round(b.r.rng.uniform(1.5, 4.0), 2)
        b.bash(cmd, stdout="bench: 100000 ops\n", stderr=gnu_time_report(cmd, peak, seconds),
               description="Benchmark the cache")
        b.truth.memory_mib.setdefault(cmd, []).append(round(peak / 1024, 1))
        peak = int(peak * MEMORY_GROWTH)


def testing(b: SessionBuilder) -> None:
    _plant_password(b)
    for _ in range(b.spec.failing_test_runs):
        b.test_run(b.tc.test_cmd, b.tc.test_file, passed=False)
        b.edit()
    b.test_run(b.tc.test_cmd, b.tc.test_file, passed=True)
    if b.spec.flaky_test:
        for passed in (True, False, True):
            b.test_run(b.tc.flaky_cmd, b.tc.flaky_cmd, passed=passed)
    for _ in range(b.spec.retry_storm):
        b.bash(b.tc.install_cmd, stderr=INSTALL_FAILURE, exit_code=1,
               description="Install dependencies")


def review(b: SessionBuilder) -> None:
    b.bash("git diff --stat", stdout=" src/app.py | 12 ++++++------\n 1 file changed\n",
           description="Show the diff")
    b.read(b.r.rng.choice(b.tc.src))
    b.bash('git commit -am "Fix retries"', stdout="[main 3f2a1bc] Fix retries\n",
           description="Commit")


PHASE_STEPS = {"planning": planning, "coding": coding, "testing": testing, "review": review}


def expected_patterns(b: SessionBuilder) -> list[str]:
    spec, out = b.spec, []
    if spec.compile_errors >= 4:
        out.append("compile_fix_loop")
    if spec.flaky_test:
        out.append("flaky_test")
    if spec.memory_growth_runs >= 3:
        out.append("memory_growth")
    if spec.retry_storm >= 3:
        out.append("retry_storm")
    if spec.stall_s > 0:
        out.append("stalled_session")
    return out


def play(b: SessionBuilder) -> None:
    """The whole session, in order."""
    rng, spec = b.r.rng, b.spec
    b.hook("SessionStart", source="startup", model=spec.model)
    b.prompt(rng.choice(PROMPTS).format(area=rng.choice(AREAS)))
    helpers = {spec.phases[i % len(spec.phases)] for i in range(spec.agents - 1)}
    number = 0
    for phase in spec.phases:
        if phase == "review":
            b.stop()
            b.prompt(REVIEW_PROMPT)
        if phase == "testing" and spec.stall_s > 0:
            # Waiting on a permission prompt: nothing is sent until the human answers.
            b.hook("Notification", message="Claude needs your permission to use Bash",
                   notification_type="permission_prompt")
            b.pending_pause_s = spec.stall_s
            b.truth.stalls_s.append(spec.stall_s)
        PHASE_STEPS[phase](b)
        if phase in helpers:
            for _ in range(sum(1 for i in range(spec.agents - 1)
                               if spec.phases[i % len(spec.phases)] == phase)):
                number += 1
                b.subagent(phase, number)
    b.stop()
    b.hook("SessionEnd", reason="prompt_input_exit")
    b.truth.expected_patterns = expected_patterns(b)
