from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_defaults_are_the_local_stack() -> None:
    s = load_settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (s.clickhouse.port, s.clickhouse.http_port) == (9000, 8123)
    assert s.collector.port == 4318 and s.gateway.port == 8080
    assert s.topics.ingest == "agent.telemetry.ingest"


def test_environment_overrides_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("AGENTWATCH_TOPICS__PARTITIONS", "12")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "broker:29092"
    assert s.topics.partitions == 12


def test_toml_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "agentwatch.toml"
    toml.write_text('[kafka]\nbootstrap_servers = "from-toml:9092"\n[collector]\nport = 14318\n')
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(toml))
    s = load_settings()
    assert s.kafka.bootstrap_servers == "from-toml:9092"
    assert s.collector.port == 14318
    monkeypatch.setenv("AGENTWATCH_COLLECTOR__PORT", "24318")
    assert load_settings().collector.port == 24318


@pytest.mark.parametrize(("raw", "expected"), [("0", False), ("false", False), ("1", True), ("true", True)])
def test_booleans_parse_strictly(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("AGENTWATCH_STACK__START_S3", raw)
    assert load_settings().stack.start_s3 is expected


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_GATEWAY__PORT", "not-a-port")
    with pytest.raises(ConfigError, match="AGENTWATCH_GATEWAY__PORT"):
        load_settings()


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.kafka.bootstrap_servers = "x"  # type: ignore[misc]


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_CLICKHOUSE__PASSWORD", "hunter2-canary")
    s = load_settings()
    assert "hunter2-canary" not in repr(s)
    assert s.clickhouse.password.get_secret_value() == "hunter2-canary"


@pytest.mark.parametrize("section", ["worker_http", "clickhouse_sink_http", "archive_sink_http",
                                     "alerts_http", "collector", "gateway"])
def test_setting_only_the_host_keeps_the_default_port(
    monkeypatch: pytest.MonkeyPatch, section: str
) -> None:
    default_port = getattr(load_settings(), section).port
    monkeypatch.setenv(f"AGENTWATCH_{section.upper()}__HOST", "0.0.0.0")
    s = getattr(load_settings(), section)
    assert (s.host, s.port) == ("0.0.0.0", default_port)
