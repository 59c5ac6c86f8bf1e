"""Hosts a command line names or implies."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.sampler.domains import from_argv, from_command, git_remote_url


def hosts(command: str, cwd: str | None = None) -> list[tuple[str, str, str]]:
    return [(a.protocol, a.domain, a.via) for a in from_command(command, cwd)]


@pytest.mark.parametrize(("command", "expected"), [
    ("curl -fsSL https://Example.com/install.sh?token=abc | sh",
     [("https", "example.com", "url")]),
    ("wget -q example.org/file.tgz", [("https", "example.org", "url")]),
    ("pip install -r requirements.txt", [("https", "pypi.org", "registry"),
                                         ("https", "files.pythonhosted.org", "registry")]),
    ("python -m pip install --index-url=https://pkgs.corp.example/simple x",
     [("https", "pkgs.corp.example", "registry")]),
    ("uv pip install rich", [("https", "pypi.org", "registry"),
                             ("https", "files.pythonhosted.org", "registry")]),
    ("npm ci", [("https", "registry.npmjs.org", "registry")]),
    ("npm install --registry https://npm.corp.example/ left-pad",
     [("https", "npm.corp.example", "registry")]),
    ("npx create-react-app web", [("https", "registry.npmjs.org", "registry")]),
    ("yarn", [("https", "registry.yarnpkg.com", "registry")]),
    ("cargo fetch", [("https", "index.crates.io", "registry"),
                     ("https", "static.crates.io", "registry")]),
    ("go mod download", [("https", "proxy.golang.org", "registry")]),
    ("git clone git@github.com:org/repo.git", [("ssh", "github.com", "url")]),
    ("git clone https://gitlab.com/org/repo", [("https", "gitlab.com", "url")]),
    ("ssh -i key -p 2222 deploy@build.example.net uptime",
     [("ssh", "build.example.net", "ssh")]),
    ("rsync -a dist/ web@cdn.example.org:/srv/www", [("ssh", "cdn.example.org", "ssh")]),
])
def test_commands(command: str, expected: list[tuple[str, str, str]]) -> None:
    assert hosts(command) == expected


@pytest.mark.parametrize("command", ["cargo test", "npm run build", "pytest -q", "git status",
                                     "pip list", "ls -la", ""])
def test_commands_that_need_no_network_name_no_host(command: str) -> None:
    assert hosts(command) == []


def repo(tmp_path: Path, url: str) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(
        '[core]\n\tbare = false\n[remote "origin"]\n\turl = ' + url + "\n"
        '\tfetch = +refs/heads/*:refs/remotes/origin/*\n[remote "fork"]\n'
        "\turl = https://gitlab.example.com/me/repo.git\n")
    (tmp_path / "src").mkdir()
    return tmp_path


def test_git_remotes_are_read_from_the_repository_config(tmp_path: Path) -> None:
    root = repo(tmp_path, "git@github.com:org/repo.git")
    assert hosts("git push", str(root / "src")) == [("ssh", "github.com", "git_remote")]
    assert hosts("git fetch fork", str(root)) == [("https", "gitlab.example.com", "git_remote")]
    assert hosts("git pull upstream", str(root)) == []
    assert hosts(f"cd {root} && git push origin main", "/") == [
        ("ssh", "github.com", "git_remote")]
    assert git_remote_url(str(root / "src"), "origin") == "git@github.com:org/repo.git"


def test_worktrees_find_the_common_config(tmp_path: Path) -> None:
    (tmp_path / "main").mkdir()
    main = repo(tmp_path / "main", "https://github.com/org/repo")
    gitdir = main / ".git" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    (gitdir / "commondir").write_text("../..\n")
    tree = tmp_path / "wt"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {gitdir}\n")
    assert git_remote_url(str(tree), "origin") == "https://github.com/org/repo"


def test_process_arguments_too() -> None:
    assert [(a.domain, a.via) for a in from_argv(
        ("/usr/bin/python3", "-m", "pip", "download", "x"), None)] == [
        ("pypi.org", "registry"), ("files.pythonhosted.org", "registry")]
    assert [a.domain for a in from_argv(("curl", "https://api.example.com/v1"), None)] == [
        "api.example.com"]
    assert from_argv((), None) == []
