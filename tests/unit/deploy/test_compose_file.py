"""deploy/docker-compose.yml: structure, health checks, and settings identical to the local stack."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_helpers import COMPOSE_FILE, DEPLOY, load_yaml

from pipeline.deploy_config import deployed_components, render_env, validate_env
from pipeline.settings import REPO_ROOT, Settings, StackSettings
from pipeline.stack.components import ComponentSpec

INFRA = ("kafka", "clickhouse", "minio", "kafka-exporter", "prometheus", "grafana")
SETUP = ("kafka-topics", "clickhouse-migrate")
# Broker properties whose value must be the same in compose as in the local stack's template.
MIRRORED_KAFKA_PROPERTIES = (
    "auto.create.topics.enable",
    "group.initial.rebalance.delay.ms",
    "log.retention.hours",
    "log.segment.bytes",
    "message.max.bytes",
    "replica.fetch.max.bytes",
)

DEPLOYED = deployed_components()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


def _port(spec: ComponentSpec) -> int:
    return spec.http(Settings()).port


def test_every_component_infra_and_setup_service_exists(services: dict[str, Any]) -> None:
    expected = {c.name for c in DEPLOYED} | set(INFRA) | set(SETUP)
    assert set(services) == expected


def test_top_level_keys_are_compose_spec_keys(compose: dict[str, Any]) -> None:
    allowed = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
    assert {k for k in compose if not k.startswith("x-")} <= allowed
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


@pytest.mark.parametrize("component", DEPLOYED, ids=lambda c: c.name)
def test_component_service_runs_its_command_with_the_rendered_env(
    services: dict[str, Any], component: ComponentSpec
) -> None:
    service = services[component.name]
    assert tuple(service["command"]) == component.command
    assert service["image"] == "agentwatch:local"
    assert service["build"]["context"] == ".."
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert service["environment"] == render_env("compose")
    validate_env(service["environment"])


@pytest.mark.parametrize("component", DEPLOYED, ids=lambda c: c.name)
def test_component_healthcheck_hits_its_health_endpoint(
    services: dict[str, Any], component: ComponentSpec
) -> None:
    test = services[component.name]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert f"http://127.0.0.1:{_port(component)}/health" in " ".join(test)


@pytest.mark.parametrize("component", DEPLOYED, ids=lambda c: c.name)
def test_components_start_after_topics_and_schema(
    services: dict[str, Any], component: ComponentSpec
) -> None:
    depends = services[component.name]["depends_on"]
    for setup in SETUP:
        assert depends[setup] == {"condition": "service_completed_successfully"}


def test_setup_waits_for_healthy_backends(services: dict[str, Any]) -> None:
    assert services["kafka-topics"]["command"] == ["topics"]
    assert services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["clickhouse-migrate"]["command"] == ["migrate"]
    assert services["clickhouse-migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name in SETUP:
        assert services[name]["restart"] == "no"
    for name in ("kafka", "clickhouse", "minio", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name


def test_every_dependency_is_a_service(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"


def test_published_ports_are_the_settings_ports(services: dict[str, Any]) -> None:
    settings = Settings()
    assert services["collector"]["ports"] == [f"{settings.collector.port}:{settings.collector.port}"]
    assert services["gateway"]["ports"] == [f"{settings.gateway.port}:{settings.gateway.port}"]
    published = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), "two services publish the same host port"
    # Scaled services cannot publish a fixed host port.
    for name in ("worker", "clickhouse-sink"):
        assert "ports" not in services[name]


def test_kafka_matches_the_local_stack(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{StackSettings().kafka_version}"
    env = kafka["environment"]
    template = (REPO_ROOT / "deploy/local/kafka/server.properties.tmpl").read_text()
    props = dict(re.findall(r"^([a-z][a-z0-9.]+)=(.*)$", template, flags=re.M))
    for prop in MIRRORED_KAFKA_PROPERTIES:
        assert env["KAFKA_" + prop.upper().replace(".", "_")] == props[prop], prop
    assert env["KAFKA_PROCESS_ROLES"] == props["process.roles"]
    bootstrap = render_env("compose")["AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{bootstrap}"
    rf = render_env("compose")["AGENTWATCH_TOPICS__REPLICATION_FACTOR"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == rf
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == rf


def test_backend_credentials_match_the_agentwatch_env(services: dict[str, Any]) -> None:
    env = render_env("compose")
    ch = services["clickhouse"]["environment"]
    assert ch["CLICKHOUSE_USER"] == env["AGENTWATCH_CLICKHOUSE__USER"]
    assert ch["CLICKHOUSE_PASSWORD"] == env["AGENTWATCH_CLICKHOUSE__PASSWORD"]
    assert ch["CLICKHOUSE_DB"] == Settings().clickhouse.database
    minio = services["minio"]["environment"]
    assert minio["MINIO_ROOT_USER"] == env["AGENTWATCH_S3__ACCESS_KEY_ID"]
    assert minio["MINIO_ROOT_PASSWORD"] == env["AGENTWATCH_S3__SECRET_ACCESS_KEY"]
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter secrets


def test_prometheus_scrapes_every_component_on_its_port() -> None:
    config = load_yaml(DEPLOY / "prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for component in DEPLOYED:
        sd = jobs[component.name]["dns_sd_configs"][0]
        assert sd["names"] == [component.name]
        assert sd["port"] == _port(component)
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert (DEPLOY / "prometheus/alerts.yml").is_file()


def test_dockerfile_installs_the_package_with_its_entrypoint() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert next(ln for ln in dockerfile.splitlines() if ln.startswith("FROM")) == "FROM python:3.11-slim"
    assert 'ENTRYPOINT ["agentwatch"]' in dockerfile
    assert "pip install -e ." in dockerfile
    # Everything the editable install reads at run time is copied in.
    for path in ("avro", "deploy/clickhouse", "pipeline", "producers", "processors", "consumers"):
        assert f"COPY {path} ./{path}" in dockerfile, path
    exposed = set(re.search(r"^EXPOSE (.*)$", dockerfile, flags=re.M).group(1).split())  # type: ignore[union-attr]
    assert exposed == {str(_port(c)) for c in DEPLOYED}


def _compose_schema() -> dict[str, Any]:
    import json
    from importlib.resources import files

    vendored = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(vendored.read_text())  # type: ignore[no-any-return]


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(_compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema is strict enough to catch a misspelt key: the check above is not vacuous.
    broken = {**compose, "services": {**compose["services"], "kafka": {
        **compose["services"]["kafka"], "healthcheck": {"test": ["CMD", "true"], "intervall": "5s"}}}}
    assert any("intervall" in e.message for e in validator.iter_errors(broken))
