"""One typed settings object for every agentwatch component.

Values come, highest priority first, from keyword arguments, ``AGENTWATCH_*`` environment
variables (nested sections joined by ``__``, e.g. ``AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS``),
an optional TOML file (``AGENTWATCH_CONFIG`` or ``./agentwatch.toml``), then the embedded
defaults of the local stack. Nothing else in the tree hard-codes a host or a port.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the package was installed from (editable install); holds ``avro/`` and ``deploy/``."""


class _Section(BaseModel):
    # strict=True on booleans below: "0"/"false"/"no" must never read as True.
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "agentwatch"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties shared by every confluent-kafka client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


class TopicSettings(_Section):
    ingest: str = "agent.telemetry.ingest"
    events: str = "agent.telemetry.events"
    widgets: str = "agent.telemetry.widgets"
    patterns: str = "agent.telemetry.patterns"
    dlq: str = "agent.telemetry.dlq"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    # Raw topics age out; this bounds how long unredacted ingest data can live in Kafka.
    ingest_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    events_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    dlq_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=-1)


class ClickHouseSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9000, ge=1, le=65535)
    http_port: int = Field(default=8123, ge=1, le=65535)
    database: str = "agentwatch"
    user: str = "default"
    password: SecretStr = SecretStr("")


class S3Settings(_Section):
    endpoint_url: str | None = "http://127.0.0.1:5000"
    region: str = "us-east-1"
    access_key_id: SecretStr = SecretStr("agentwatch")
    secret_access_key: SecretStr = SecretStr("agentwatch")


class ArchiveSettings(_Section):
    # file:// keeps the local stack's recordings on disk across restarts; s3://bucket/prefix
    # uses the S3 section's endpoint.
    target: str = ""

    def resolved_target(self, stack_dir: Path) -> str:
        return self.target or (stack_dir / "archive").as_uri()


class HttpServiceSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class StackSettings(_Section):
    """The local single-machine stack that `agentwatch up` manages."""

    dir: Path = REPO_ROOT / ".stack"
    kafka_version: str = "4.1.1"
    kafka_heap: str = "512m"
    brokers: Literal[1, 3] = 1
    kafka_controller_port: int = 9093
    cluster_ports: tuple[int, int, int] = (9092, 9094, 9096)
    s3_port: int = Field(default=5000, ge=1, le=65535)
    start_s3: bool = Field(default=True, strict=False)
    start_timeout_s: float = Field(default=90.0, gt=0)

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


def _toml_path() -> Path | None:
    explicit = os.environ.get("AGENTWATCH_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("agentwatch.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Frozen configuration; build once at process start and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTWATCH_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    s3: S3Settings = S3Settings()
    archive: ArchiveSettings = ArchiveSettings()
    collector: HttpServiceSettings = HttpServiceSettings(port=4318)
    gateway: HttpServiceSettings = HttpServiceSettings(port=8080)
    # Health and /metrics endpoints of the components that serve no other HTTP.
    worker_http: HttpServiceSettings = HttpServiceSettings(port=6066)
    clickhouse_sink_http: HttpServiceSettings = HttpServiceSettings(port=9101)
    archive_sink_http: HttpServiceSettings = HttpServiceSettings(port=9102)
    alerts_http: HttpServiceSettings = HttpServiceSettings(port=9103)
    stack: StackSettings = StackSettings()
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_path()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @cached_property
    def archive_target(self) -> str:
        return self.archive.resolved_target(self.stack.dir)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning pydantic's error into one that names the bad variable."""
    from pydantic import ValidationError

    from pipeline.errors import ConfigError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"AGENTWATCH_{'__'.join(str(p).upper() for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
