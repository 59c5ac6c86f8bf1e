from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from producers.install_hooks import HOOK_EVENTS, hook_command, merge_env, merge_hooks, otel_env

URL = "http://127.0.0.1:4318/hooks"
CMD = hook_command("/venv/bin/python")
USER_HOOK = {"type": "command", "command": "~/bin/lint.sh", "timeout": 30}
USER_SETTINGS: dict[str, Any] = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test)"]},
    "env": {"OTEL_METRICS_EXPORTER": "console"},
    "hooks": {
        "PostToolUse": [{"matcher": "Edit|Write", "hooks": [USER_HOOK]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
    },
}


def ours(doc: dict[str, Any], event: str) -> list[dict[str, Any]]:
    return [h for g in doc["hooks"].get(event, []) for h in g["hooks"]
            if h.get("url") == URL or "hook_cmd.py" in h.get("command", "")]


def test_installs_every_event_and_keeps_the_users_hooks() -> None:
    doc = merge_hooks(USER_SETTINGS, mode="http", url=URL, command=CMD)
    for event in HOOK_EVENTS:
        [entry] = ours(doc, event)
        if event == "SessionStart":  # Claude Code runs SessionStart hooks as commands only
            assert entry == {"type": "command", "command": CMD, "timeout": 10}
        else:
            assert entry == {"type": "http", "url": URL, "timeout": 5}
    assert doc["hooks"]["PostToolUse"][0] == {"matcher": "Edit|Write", "hooks": [USER_HOOK]}
    assert doc["hooks"]["PostToolUse"][1]["matcher"] == "*"
    assert "matcher" not in doc["hooks"]["Stop"][1]
    assert doc["hooks"]["Stop"][0]["hooks"][0]["command"] == "notify-send done"
    assert {k: v for k, v in doc.items() if k != "hooks"} == {
        k: v for k, v in USER_SETTINGS.items() if k != "hooks"}


def test_running_twice_changes_nothing_and_switching_mode_replaces() -> None:
    once = merge_hooks(USER_SETTINGS, mode="http", url=URL, command=CMD)
    assert merge_hooks(once, mode="http", url=URL, command=CMD) == once
    command = merge_hooks(once, mode="command", url=URL, command=CMD)
    for event in HOOK_EVENTS:
        assert ours(command, event) == [{"type": "command", "command": CMD, "timeout": 10}]
    assert command["hooks"]["PostToolUse"][0]["hooks"] == [USER_HOOK]


def test_remove_restores_the_users_file() -> None:
    installed = merge_hooks(USER_SETTINGS, mode="http", url=URL, command=CMD)
    assert merge_hooks(installed, mode="http", url=URL, command=CMD, remove=True) == USER_SETTINGS
    assert merge_hooks({}, mode="http", url=URL, command=CMD, remove=True) == {}


def test_a_group_shared_with_the_user_keeps_the_users_part() -> None:
    shared = {"hooks": {"Stop": [{"hooks": [USER_HOOK, {"type": "http", "url": URL}]}]}}
    doc = merge_hooks(shared, mode="http", url=URL, command=CMD, remove=True)
    assert doc == {"hooks": {"Stop": [{"hooks": [USER_HOOK]}]}}


def test_other_http_hooks_are_not_ours() -> None:
    other = {"type": "http", "url": "http://example.internal/hooks"}
    doc = merge_hooks({"hooks": {"Stop": [{"hooks": [other]}]}}, mode="http", url=URL,
                      command=CMD, remove=True)
    assert doc["hooks"]["Stop"] == [{"hooks": [other]}]


def test_env_never_overrides_the_user() -> None:
    doc, skipped = merge_env(USER_SETTINGS, otel_env("http://127.0.0.1:4318"))
    assert skipped == ["OTEL_METRICS_EXPORTER"]
    assert doc["env"]["OTEL_METRICS_EXPORTER"] == "console"
    assert doc["env"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert doc["env"]["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ConfigError):
        merge_hooks({"hooks": []}, mode="http", url=URL, command=CMD)
    with pytest.raises(ConfigError):
        merge_env({"env": "x"}, {})


def test_command_writes_merges_backs_up_and_prints_otel(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps(USER_SETTINGS))
    assert main(["install-hooks", "--project", str(tmp_path)]) == 0
    doc = json.loads(settings.read_text())
    assert doc["hooks"]["PostToolUse"][0]["hooks"] == [USER_HOOK]
    assert len(ours(doc, "PreToolUse")) == 1
    assert json.loads(settings.with_name("settings.json.agentwatch.bak").read_text()) == \
        USER_SETTINGS
    out = capsys.readouterr().out
    assert "export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in out
    assert "export CLAUDE_CODE_ENABLE_TELEMETRY=1" in out
    assert main(["install-hooks", "--project", str(tmp_path)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert main(["install-hooks", "--project", str(tmp_path), "--remove"]) == 0
    assert json.loads(settings.read_text()) == USER_SETTINGS


def test_invalid_json_is_left_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text("{ not json")
    assert main(["install-hooks", "--project", str(tmp_path)]) == 2
    assert settings.read_text() == "{ not json"
    assert "not valid JSON" in capsys.readouterr().err


def test_local_and_command_mode(tmp_path: Path) -> None:
    assert main(["install-hooks", "--project", str(tmp_path), "--local", "--command"]) == 0
    doc = json.loads((tmp_path / ".claude" / "settings.local.json").read_text())
    [entry] = doc["hooks"]["Stop"][0]["hooks"]
    assert entry["type"] == "command" and entry["command"].endswith("producers/hook_cmd.py")
    assert " -S " in entry["command"]
