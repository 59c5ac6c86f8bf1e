"""The AGENTWATCH_* environment of containerised deployments, derived from the Settings model.

docker-compose (deploy/docker-compose.yml) and Kubernetes (deploy/k8s/configmap.yaml) carry
copies of this environment; tests/unit/deploy/ fails when a copy drifts from what this module
renders, and every value is validated by building a real ``Settings`` from it, so a renamed
field or a bad value breaks the test rather than a deployment. Print a profile's environment
with ``python -m pipeline.deploy_config compose|k8s [--yaml]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.settings import Settings
from pipeline.stack.components import COMPONENTS, ComponentSpec

HOST_LOCAL_COMPONENTS: frozenset[str] = frozenset({"sampler"})
"""Components that run on each developer's machine next to the agents (the sampler reads the
agents' processes), never in the cluster; every other registered component is deployed."""

Profile = Literal["compose", "k8s"]
PROFILES: tuple[Profile, ...] = ("compose", "k8s")

ENV_PREFIX = "AGENTWATCH_"
CONTAINER_STATE_DIR = "/var/lib/agentwatch"
"""Volume mount of each container's state (spool, Faust tables, alert dead letters)."""
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8"
MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
ARCHIVE_BUCKET = "agentwatch-archive"

# Sections whose HTTP listener must accept traffic from other containers (probes, Prometheus).
_HTTP_SECTIONS = (
    "collector", "gateway", "worker_http", "clickhouse_sink_http", "archive_sink_http", "alerts_http",
)

SECRET_FIELDS: frozenset[str] = frozenset({
    "AGENTWATCH_CLICKHOUSE__PASSWORD",
    "AGENTWATCH_S3__ACCESS_KEY_ID",
    "AGENTWATCH_S3__SECRET_ACCESS_KEY",
    "AGENTWATCH_GATEWAY__JWT_SECRET",
})
"""Variables Kubernetes takes from the `agentwatch-secrets` Secret, never from the ConfigMap."""


@dataclass(frozen=True)
class Topology:
    """Where the shared services live and how big the Kafka side is, per deployment profile."""

    kafka_bootstrap: str
    clickhouse_host: str
    s3_endpoint: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int


# Partitions (docs/operations.md, "Partitions"): counts with many divisors, so scaling a group
# between them never leaves one instance with twice the load of another. 12 (1, 2, 3, 4, 6, 12
# consumers) for one compose host; 24 on Kubernetes, where workers (~1,900 events per
# CPU-second measured, docs/benchmarks.md) are the first thing to scale out. Compose runs one
# broker, Kubernetes three.
TOPOLOGIES: Mapping[Profile, Topology] = {
    "compose": Topology("kafka:9092", "clickhouse", "http://minio:9000", 12, 1, 1),
    "k8s": Topology(
        "agentwatch-kafka-bootstrap:9092", "clickhouse-agentwatch", "http://minio:9000", 24, 3, 2,
    ),
}

DEV_CREDENTIALS: Mapping[str, str] = {
    "AGENTWATCH_CLICKHOUSE__PASSWORD": "agentwatch",
    "AGENTWATCH_S3__ACCESS_KEY_ID": "agentwatch",
    "AGENTWATCH_S3__SECRET_ACCESS_KEY": "agentwatch-secret",
}
"""Credentials compose ships with (MinIO wants a secret of 8+ characters); change them for real use."""


def deployed_components() -> tuple[ComponentSpec, ...]:
    """The registered components a cluster deployment runs, in start order."""
    return tuple(c for c in COMPONENTS if c.name not in HOST_LOCAL_COMPONENTS)


def _overrides(profile: Profile) -> dict[str, dict[str, Any]]:
    topo = TOPOLOGIES[profile]
    nested: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": topo.kafka_bootstrap},
        "topics": {
            "partitions": topo.partitions,
            "replication_factor": topo.replication_factor,
            "min_insync_replicas": topo.min_insync_replicas,
        },
        "clickhouse": {"host": topo.clickhouse_host, "user": "agentwatch"},
        "s3": {"endpoint_url": topo.s3_endpoint},
        "archive": {"target": f"s3://{ARCHIVE_BUCKET}/recordings", "create_bucket": True},
        "stack": {"dir": CONTAINER_STATE_DIR},
    }
    defaults = Settings.model_fields
    for section in _HTTP_SECTIONS:
        # Host and port together: the rendered environment says where each component listens
        # without relying on the embedded defaults.
        default = defaults[section].default  # 0.0.0.0 below: reached from other containers
        nested[section] = {"host": "0.0.0.0", "port": default.port}
    return nested


def _flatten(nested: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for section, fields in nested.items():
        for name, value in fields.items():
            text = json.dumps(value) if isinstance(value, bool) else str(value)
            env[f"{ENV_PREFIX}{section.upper()}__{name.upper()}"] = text
    return env


def render_env(profile: Profile, *, include_secrets: bool | None = None) -> dict[str, str]:
    """The environment every agentwatch container of ``profile`` gets, sorted by name.

    Compose inlines development credentials (include_secrets defaults to True there);
    Kubernetes reads them from a Secret, so its ConfigMap leaves them out.
    """
    env = _flatten(_overrides(profile))
    env["AGENTWATCH_LOG_FORMAT"] = "json"
    secrets = profile == "compose" if include_secrets is None else include_secrets
    if secrets:
        env.update(DEV_CREDENTIALS)
    validate_env(env)
    return dict(sorted(env.items()))


def validate_env(env: Mapping[str, str]) -> Settings:
    """Build Settings from ``env`` exactly as a container would; raises on unknown or bad values."""
    from pydantic_settings import EnvSettingsSource

    source = EnvSettingsSource(Settings, case_sensitive=False)
    source.env_vars = {k.lower(): v for k, v in env.items()}
    values = source()
    # The env source silently drops variables naming no top-level field; a typo must not pass.
    unknown = [
        k for k in env
        if not k.startswith(ENV_PREFIX)
        or k.removeprefix(ENV_PREFIX).split("__")[0].lower() not in Settings.model_fields
    ]
    if unknown:
        raise ValueError(f"not agentwatch settings: {unknown}")
    return Settings(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.deploy_config", description=__doc__)
    parser.add_argument("profile", choices=PROFILES)
    parser.add_argument("--yaml", action="store_true", help="print as a YAML mapping (KEY: \"value\")")
    args = parser.parse_args(argv)
    for key, value in render_env(args.profile).items():
        print(f"{key}: {json.dumps(value)}" if args.yaml else f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
