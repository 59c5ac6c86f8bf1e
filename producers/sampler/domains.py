"""Hosts a command line names or implies: URLs, git remotes, package registries, ssh targets.

Pure string work plus reading a repository's ``.git/config`` (for ``git push`` naming ``origin``).
What a command *implies* (``pip install`` talks to PyPI unless given an index) is a guess from
the command line, marked as such (``via``); the TCP connections the sampler sees are the facts.
Only hosts are kept, never paths or queries (tokens hide there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from producers.collector.commands import invocations, split_words

_URL = re.compile(r"\b((?:https?|wss?|ftp|git|ssh|git\+ssh|git\+https)://[^\s'\"<>]+)")
_SCP = re.compile(r"\A(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+\.[A-Za-z]{2,}|[A-Za-z0-9-]+):(?!//)")
_BARE_HOST = re.compile(r"\A([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(?::\d+)?(?:/|\Z)")
_REMOTE = re.compile(r'\[\s*remote\s+"([^"]+)"\s*\]')
MAX_HOSTS = 16

PYPI = ("pypi.org", "files.pythonhosted.org")
NPM = ("registry.npmjs.org",)
YARN = ("registry.yarnpkg.com",)
CRATES = ("index.crates.io", "static.crates.io")
GO_PROXY = ("proxy.golang.org",)
RUBYGEMS = ("rubygems.org",)

_PIP_SUBS = frozenset({"install", "download", "wheel"})
_UV_SUBS = frozenset({"add", "sync", "lock", "tool"})
_POETRY_SUBS = frozenset({"install", "add", "update", "lock"})
_NPM_SUBS = frozenset({"install", "i", "ci", "add", "update", "up", "upgrade", "exec", "x",
                       "publish", "dlx", "outdated", "view"})
_CARGO_SUBS = frozenset({"fetch", "install", "update", "add", "publish", "generate-lockfile",
                         "search"})
_GO_SUBS = frozenset({"get", "install"})
_GIT_REMOTE_SUBS = frozenset({"fetch", "pull", "push", "ls-remote"})
_EXEC_ALONE = frozenset({"npx", "pnpx", "bunx"})
_SSH = frozenset({"ssh", "scp", "sftp", "rsync"})
_SSH_VALUE_FLAGS = frozenset({"-p", "-i", "-l", "-o", "-F", "-J", "-L", "-R", "-D", "-b", "-c",
                              "-e", "-m", "-O", "-S", "-W", "-w", "-E", "-B", "-Q", "-P"})
_INDEX_FLAGS = frozenset({"-i", "--index-url", "--extra-index-url", "--index", "--default-index",
                          "--registry"})


@dataclass(frozen=True, slots=True)
class Access:
    protocol: str
    domain: str
    via: str
    """``url`` (named in the command), ``git_remote``, ``registry`` (implied), ``ssh``, or
    ``connection`` (a TCP connection seen in the call's process tree)."""
    program: str


def _host(url: str) -> tuple[str, str] | None:
    """(protocol, host) of a URL or scp-like ``user@host:path``."""
    if "://" in url:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return None
        scheme = parts.scheme.split("+")[-1] or "https"
        return (scheme, host) if host else None
    match = _SCP.match(url)
    if match and "." in match.group(1):
        return "ssh", match.group(1).lower()
    return None


def _flag_values(args: tuple[str, ...], flags: frozenset[str]) -> list[str]:
    out = []
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in flags:
            if eq:
                out.append(value)
            elif i + 1 < len(args):
                out.append(args[i + 1])
    return out


def _positionals(args: tuple[str, ...]) -> list[str]:
    return [a for a in args if not a.startswith("-")]


def git_remote_url(cwd: str | None, remote: str) -> str | None:
    """The url of ``remote`` in the repository containing ``cwd`` (worktrees included)."""
    if not cwd:
        return None
    config = _git_config(Path(cwd))
    if config is None:
        return None
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return None
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            match = _REMOTE.match(line)
            current = match.group(1) if match else None
        elif current == remote and line.replace(" ", "").startswith("url="):
            return line.split("=", 1)[1].strip()
    return None


def _git_config(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return dot / "config"
        if dot.is_file():
            try:
                target = dot.read_text().strip()
            except OSError:
                return None
            if not target.startswith("gitdir:"):
                return None
            gitdir = (folder / target[7:].strip()).resolve()
            common = gitdir / "commondir"
            if common.is_file():
                try:
                    gitdir = (gitdir / common.read_text().strip()).resolve()
                except OSError:
                    return None
            return gitdir / "config"
    return None


def _invocation(program: str, args: tuple[str, ...], cwd: str | None) -> list[Access]:
    out: list[Access] = []

    def add(protocol: str, domain: str, via: str) -> None:
        out.append(Access(protocol, domain.lower(), via, program))

    def registry(defaults: tuple[str, ...]) -> None:
        named = [h for v in _flag_values(args, _INDEX_FLAGS) if (h := _host(v))]
        for protocol, host in named:
            add(protocol, host, "registry")
        if not named:
            for host in defaults:
                add("https", host, "registry")

    words = _positionals(args)
    sub = words[0] if words else ""
    if _python_install(program, words):
        registry(PYPI)
    elif program in ("npm", "pnpm", "bun") and sub in _NPM_SUBS:
        registry(NPM)
    elif program == "yarn" and (not words or sub in _NPM_SUBS):
        registry(YARN)
    elif program == "cargo" and sub in _CARGO_SUBS:
        registry(CRATES)
    elif program == "go" and (sub in _GO_SUBS or words[:2] == ["mod", "download"]):
        registry(GO_PROXY)
    elif program in ("gem", "bundle") and sub in ("install", "update"):
        registry(RUBYGEMS)
    elif program == "git":
        _git(words, cwd, add)
    elif program in _SSH:
        for target in _ssh_targets(program, args):
            add("ssh", target, "ssh")
    elif program in ("curl", "wget", "http", "https", "xh"):
        for word in words:
            match = _BARE_HOST.match(word)
            if "://" not in word and match:
                add("https", match.group(1), "url")
    for url in _URL.findall(" ".join(args)):
        found = _host(url)
        if found:
            add(found[0], found[1], "url")
    return out


Add = Callable[[str, str, str], None]


def _python_install(program: str, words: list[str]) -> bool:
    sub = words[0] if words else ""
    if program in ("pip", "pip3"):
        return sub in _PIP_SUBS
    if program == "uv":
        return sub in _UV_SUBS or (sub == "pip" and len(words) > 1 and words[1] in _PIP_SUBS)
    return program in ("uvx", "pipx") or (program in ("poetry", "pdm") and sub in _POETRY_SUBS)


def _git(words: list[str], cwd: str | None, add: Add) -> None:
    sub = words[0] if words else ""
    if sub == "clone" and len(words) > 1:
        found = _host(words[1])
        if found:
            add(found[0], found[1], "url")
    elif sub in _GIT_REMOTE_SUBS:
        remote = words[1] if len(words) > 1 else "origin"
        found = _host(remote) or _host(git_remote_url(cwd, remote) or "")
        if found:
            add(found[0], found[1], "git_remote")


def _ssh_targets(program: str, args: tuple[str, ...]) -> list[str]:
    """ssh: its destination; scp/sftp/rsync: the host of every ``[user@]host:path``."""
    out = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _SSH_VALUE_FLAGS and program in ("ssh", "scp", "sftp"):
            skip = True
        elif not arg.startswith("-") and "://" not in arg:
            if program == "ssh":
                return [arg.split("@")[-1]]
            if ":" in arg:
                out.append(arg.split(":")[0].split("@")[-1])
    return [h for h in out if h]


def _dedup(found: list[Access]) -> list[Access]:
    seen: set[str] = set()
    out = []
    for access in found:
        if access.domain not in seen and access.domain:
            seen.add(access.domain)
            out.append(access)
    return out[:MAX_HOSTS]


def from_command(command: str, cwd: str | None) -> list[Access]:
    """Hosts a shell command line names or implies (``cd`` inside it moves the cwd)."""
    found: list[Access] = []
    if any(w.rsplit("/", 1)[-1] in _EXEC_ALONE for w in split_words(command)[:8]):
        found += [Access("https", h, "registry", "npx") for h in NPM]
    for inv in invocations(command):
        if inv.program == "cd" and inv.args:
            target = os.path.expanduser(inv.args[0])
            cwd = os.path.normpath(os.path.join(cwd or "/", target))
            continue
        found += _invocation(inv.program, inv.args, cwd)
    return _dedup(found)


def from_argv(argv: tuple[str, ...], cwd: str | None) -> list[Access]:
    """Hosts one process's argument vector names or implies."""
    if not argv:
        return []
    program = argv[0].rsplit("/", 1)[-1]
    args = argv[1:]
    if program.startswith("python") and len(args) >= 2 and args[0] == "-m":
        program, args = args[1], args[2:]
    found = [Access("https", h, "registry", program) for h in NPM] if program in _EXEC_ALONE else []
    return _dedup(found + _invocation(program, tuple(args), cwd))
