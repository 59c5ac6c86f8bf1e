"""Reading shell commands the agent ran: program and arguments, test or build run, output shape.

Pure string work over what the Bash tool reports; no process is run and nothing is read from
disk. A compound command (``cd x && pytest -q``) is split on ``&&``, ``||``, ``;`` and ``|``;
wrappers (``env``, ``sudo``, ``time``, ``timeout 60``, ``uv run``, ``npx``, ``python -m``...)
and ``VAR=value`` prefixes are looked through.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass

MAX_ARGS = 32
MAX_ARG_CHARS = 256

_SPLIT = re.compile(r"\s*(?:&&|\|\||;|\||\n)\s*")
_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_URL_HOST = re.compile(r"\b(?:https?|wss?|ftp)://([A-Za-z0-9.-]+)")
_EXIT_CODE = re.compile(r"\bexit(?:ed with)? code:? ?(-?\d+)", re.IGNORECASE)
_PYTEST_COUNTS = re.compile(
    r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")

# Wrappers and how many following words they take before the real program.
_WRAPPERS: dict[str, int] = {
    "sudo": 0, "env": 0, "time": 0, "nice": 0, "nohup": 0, "exec": 0, "command": 0,
    "timeout": 1, "xvfb-run": 0, "stdbuf": 0,
}
_RUNNERS: dict[str, tuple[str, ...]] = {
    # (program, words that make it a runner of the next word)
    "uv": ("run",), "poetry": ("run",), "pipenv": ("run",), "pdm": ("run",), "hatch": ("run",),
    "rye": ("run",), "pnpm": ("exec", "dlx"), "yarn": ("dlx", "exec"), "bundle": ("exec",),
}
_EXEC_ALONE = frozenset({"npx", "bunx", "pnpx"})

_TEST_PROGRAMS = frozenset({
    "pytest", "py.test", "tox", "nox", "jest", "vitest", "mocha", "ava", "tap", "karma",
    "phpunit", "rspec", "ctest", "nextest", "playwright", "cypress", "behave", "trial",
    "unittest", "nose2",
})
_TEST_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "go": frozenset({"test"}), "cargo": frozenset({"test", "nextest"}),
    "npm": frozenset({"test", "t"}), "yarn": frozenset({"test"}), "pnpm": frozenset({"test", "t"}),
    "bun": frozenset({"test"}), "deno": frozenset({"test"}), "mix": frozenset({"test"}),
    "rebar3": frozenset({"eunit", "ct", "proper"}), "make": frozenset({"test", "check", "tests"}),
    "mvn": frozenset({"test", "verify"}), "gradle": frozenset({"test", "check"}),
    "dotnet": frozenset({"test"}), "bazel": frozenset({"test"}), "swift": frozenset({"test"}),
    "sbt": frozenset({"test"}), "lein": frozenset({"test"}), "stack": frozenset({"test"}),
    "cabal": frozenset({"test"}), "zig": frozenset({"test"}), "flutter": frozenset({"test"}),
    "dart": frozenset({"test"}), "elixir": frozenset({"test"}), "just": frozenset({"test"}),
}
_BUILD_PROGRAMS = frozenset({"tsc", "ninja", "webpack", "vite", "esbuild", "rollup", "javac",
                             "gcc", "g++", "clang", "clang++", "rustc", "msbuild", "meson"})
_BUILD_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "go": frozenset({"build", "install"}), "cargo": frozenset({"build", "b"}),
    "mvn": frozenset({"package", "compile", "install"}),
    "gradle": frozenset({"build", "assemble", "compileJava", "jar"}),
    "rebar3": frozenset({"compile", "release", "escriptize"}), "mix": frozenset({"compile"}),
    "dotnet": frozenset({"build", "publish"}), "bazel": frozenset({"build"}),
    "swift": frozenset({"build"}), "docker": frozenset({"build"}), "podman": frozenset({"build"}),
    "sbt": frozenset({"compile", "package", "assembly"}), "stack": frozenset({"build"}),
    "cabal": frozenset({"build"}), "zig": frozenset({"build"}), "bun": frozenset({"build"}),
    "cmake": frozenset({"--build"}), "flutter": frozenset({"build"}), "deno": frozenset({"compile"}),
    "yarn": frozenset({"build"}), "pnpm": frozenset({"build"}),
}
_SCRIPT_RUNNERS = frozenset({"npm", "yarn", "pnpm", "bun"})
_SETUP = frozenset({"cd", "pushd", "popd", "source", ".", "export", "set", "unset"})


@dataclass(frozen=True)
class Invocation:
    """One simple command: the program (basename) and its arguments."""

    program: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class RunKind:
    """What a command line was, if it was a test or build run."""

    kind: str
    """``test`` or ``build``."""
    tool: str
    """The runner, e.g. ``pytest``, ``cargo test``, ``npm run build``."""
    target: str
    """What it ran on (its non-option arguments), or the tool when none are given."""


_QUOTING = frozenset("'\"\\")


def split_words(command: str) -> list[str]:
    # shlex is only needed for quoting and costs ~20x a plain split: most commands have none.
    if not _QUOTING.intersection(command):
        return command.split()
    try:
        return shlex.split(command, posix=True)
    except ValueError:
        return command.split()


def _strip_wrappers(words: list[str]) -> list[str]:
    i = 0
    while i < len(words):
        word = words[i]
        base = word.rsplit("/", 1)[-1]
        if _ASSIGN.match(word):
            i += 1
        elif base in _WRAPPERS:
            i += 1
            skip = _WRAPPERS[base]
            while i < len(words) and words[i].startswith("-"):
                i += 1
            i += skip
        elif base in _EXEC_ALONE:
            i += 1
        elif base in _RUNNERS and i + 1 < len(words) and words[i + 1] in _RUNNERS[base]:
            i += 2
        elif base.startswith("python") and i + 2 < len(words) and words[i + 1] == "-m":
            return [words[i + 2], *words[i + 3:]]
        else:
            break
    return words[i:]


@functools.lru_cache(maxsize=4096)
def invocations(command: str) -> tuple[Invocation, ...]:
    """The simple commands of a command line, in order, wrappers looked through (cached: agents
    run the same commands again and again)."""
    out = []
    for part in _SPLIT.split(command.strip()):
        words = _strip_wrappers(split_words(part)) if part else []
        if words:
            program = words[0].rsplit("/", 1)[-1]
            out.append(Invocation(program, tuple(words[1:])))
    return tuple(out)


def program_and_args(command: str) -> tuple[str, list[str]]:
    """The main program of a command line and its (bounded) arguments.

    The main program is the first one that does more than set up the shell: ``cd repo && pytest -q``
    and ``pytest | tee log`` both ran pytest.
    """
    found = [inv for inv in invocations(command) if inv.program not in _SETUP]
    if not found:
        words = split_words(command)
        return (words[0] if words else "sh"), [w[:MAX_ARG_CHARS] for w in words[1:MAX_ARGS + 1]]
    main = found[0]
    return main.program, [a[:MAX_ARG_CHARS] for a in main.args[:MAX_ARGS]]


def _targets(args: tuple[str, ...], skip: int) -> str:
    words = [a for a in args[skip:] if not a.startswith("-")]
    return " ".join(words)[:MAX_ARG_CHARS]


def _subcommand(inv: Invocation) -> str:
    for arg in inv.args:
        if not arg.startswith("-") or arg == "--build":
            return arg
    return ""


def classify(command: str) -> RunKind | None:
    """``test`` if any simple command runs tests, else ``build`` if any builds, else None."""
    found_build: RunKind | None = None
    for inv in invocations(command):
        program = "gradle" if inv.program in ("gradlew", "./gradlew") else inv.program
        program = "mvn" if program == "mvnw" else program
        sub = _subcommand(inv)
        if program in _TEST_PROGRAMS:
            return RunKind("test", program, _targets(inv.args, 0) or program)
        if sub in _TEST_SUBCOMMANDS.get(program, ()):
            return RunKind("test", f"{program} {sub}", _targets(inv.args, 1) or f"{program} {sub}")
        if program in _SCRIPT_RUNNERS and sub == "run" and len(inv.args) > 1:
            script = inv.args[inv.args.index("run") + 1] if "run" in inv.args else ""
            if script.startswith("test"):
                return RunKind("test", f"{program} run {script}", script)
            if script.startswith(("build", "compile")) and found_build is None:
                found_build = RunKind("build", f"{program} run {script}", script)
            continue
        if found_build is None:
            if program in _BUILD_PROGRAMS:
                found_build = RunKind("build", program, _targets(inv.args, 0) or program)
            elif sub in _BUILD_SUBCOMMANDS.get(program, ()):
                found_build = RunKind("build", f"{program} {sub}",
                                      _targets(inv.args, 1) or f"{program} {sub}")
            elif program == "make":
                found_build = RunKind("build", "make", _targets(inv.args, 0) or "make")
            elif program == "build":
                found_build = RunKind("build", "python -m build", "python -m build")
    return found_build


def network_hosts(command: str) -> list[str]:
    """Hosts named by URLs in a command line (curl, wget, git clone...), first 16, in order."""
    seen: list[str] = []
    for host in _URL_HOST.findall(command):
        if host not in seen:
            seen.append(host)
    return seen[:16]


def exit_code_from(text: str) -> int | None:
    """``Exit code 2`` / ``exited with code 2`` in an error text, as Claude Code reports them."""
    match = _EXIT_CODE.search(text)
    return int(match.group(1)) if match else None


def line_count(text: str) -> int:
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def excerpt(text: str, limit: int) -> str | None:
    """Head and tail of a long text (a test summary sits at the end), at most ``limit`` chars."""
    if not text or limit <= 0:
        return None
    if len(text) <= limit:
        return text
    marker = f"\n...[{len(text) - limit} chars cut]...\n"
    keep = max(0, limit - len(marker))
    head = keep // 2
    return text[:head] + marker + text[len(text) - (keep - head):]


def result_counts(output: str) -> dict[str, str]:
    """pytest-style ``3 passed, 1 failed`` counts from the tail of the output, as metadata."""
    counts: dict[str, str] = {}
    for number, word in _PYTEST_COUNTS.findall(output[-4000:]):
        key = "errors" if word.startswith("error") else word
        counts[f"tests.{key}"] = number
    return counts
