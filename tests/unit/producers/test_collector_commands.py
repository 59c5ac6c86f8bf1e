from __future__ import annotations

import pytest

from producers.collector.commands import (
    classify,
    excerpt,
    exit_code_from,
    line_count,
    network_hosts,
    program_and_args,
    result_counts,
)


@pytest.mark.parametrize(("command", "kind", "tool"), [
    ("pytest -q tests/unit", "test", "pytest"),
    ("cd repo && uv run pytest", "test", "pytest"),
    ("FOO=1 timeout 60 python -m pytest -x tests/", "test", "pytest"),
    (".venv/bin/pytest tests", "test", "pytest"),
    ("python3 -m unittest discover", "test", "unittest"),
    ("npm test", "test", "npm test"),
    ("npm run test:unit", "test", "npm run test:unit"),
    ("yarn test", "test", "yarn test"),
    ("npx jest src", "test", "jest"),
    ("cargo test --all", "test", "cargo test"),
    ("go test ./...", "test", "go test"),
    ("rebar3 eunit", "test", "rebar3 eunit"),
    ("rebar3 ct --suite foo", "test", "rebar3 ct"),
    ("mix test", "test", "mix test"),
    ("make test", "test", "make test"),
    ("./gradlew test", "test", "gradle test"),
    ("mvn -q verify", "test", "mvn verify"),
    ("tox -e py311", "test", "tox"),
    ("make && make check", "test", "make check"),
    ("make", "build", "make"),
    ("make -j4 all", "build", "make"),
    ("cargo build --release", "build", "cargo build"),
    ("go build ./cmd/x", "build", "go build"),
    ("npm run build", "build", "npm run build"),
    ("tsc -p .", "build", "tsc"),
    ("docker build -t x .", "build", "docker build"),
    ("cmake --build build", "build", "cmake --build"),
    ("python -m build", "build", "python -m build"),
    ("rebar3 compile", "build", "rebar3 compile"),
])
def test_test_and_build_runs_are_recognised(command: str, kind: str, tool: str) -> None:
    found = classify(command)
    assert found is not None, command
    assert (found.kind, found.tool) == (kind, tool)
    assert found.target


@pytest.mark.parametrize("command", [
    "ls -la", "git status", "echo test", "cat Makefile", "grep -r pytest .", "npm install",
    "cargo fmt", "go vet ./...", "pip install pytest", "git commit -m 'make test pass'", "",
])
def test_other_commands_are_neither(command: str) -> None:
    assert classify(command) is None


def test_targets_are_the_non_option_arguments() -> None:
    found = classify("pytest -q -x tests/unit tests/integration")
    assert found is not None and found.target == "tests/unit tests/integration"


@pytest.mark.parametrize(("command", "program", "args"), [
    ("cd repo && pytest -q", "pytest", ["-q"]),
    ("pytest | tee log.txt", "pytest", []),
    ("FOO=bar BAZ=1 ./run.sh --fast", "run.sh", ["--fast"]),
    ("sudo -E apt-get install -y jq", "apt-get", ["install", "-y", "jq"]),
    ("echo 'unbalanced", "echo", ["'unbalanced"]),
    ("cd /tmp", "cd", ["/tmp"]),
])
def test_program_and_args(command: str, program: str, args: list[str]) -> None:
    assert program_and_args(command) == (program, args)


def test_arguments_are_bounded() -> None:
    program, args = program_and_args("echo " + " ".join(["x" * 1000] * 100))
    assert program == "echo" and len(args) == 32 and all(len(a) == 256 for a in args)


def test_helpers() -> None:
    assert network_hosts("curl https://a.example/x && wget http://b.example https://a.example") \
        == ["a.example", "b.example"]
    assert exit_code_from("Error: Exit code 2\nboom") == 2
    assert exit_code_from("Command exited with code 127") == 127
    assert exit_code_from("no code here") is None
    assert line_count("") == 0 and line_count("a") == 1 and line_count("a\nb\n") == 2
    assert excerpt("", 10) is None and excerpt("short", 10) == "short"
    cut = excerpt("head" + "x" * 1000 + "tail", 100)
    assert cut is not None and len(cut) <= 100 and cut.startswith("head") and cut.endswith("tail")
    assert result_counts("=== 3 passed, 1 failed, 2 errors, 1 skipped in 0.5s ===") == {
        "tests.passed": "3", "tests.failed": "1", "tests.errors": "2", "tests.skipped": "1"}
