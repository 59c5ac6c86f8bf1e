"""The deployment environment is valid Settings and every copy of it matches the renderer."""

from __future__ import annotations

import pytest

from pipeline.deploy_config import (
    DEV_CREDENTIALS,
    HOST_LOCAL_COMPONENTS,
    SECRET_FIELDS,
    deployed_components,
    main,
    render_env,
    validate_env,
)
from pipeline.settings import Settings
from pipeline.stack.components import COMPONENTS

DEPLOYED = deployed_components()


@pytest.mark.parametrize("profile", ["compose", "k8s"])
def test_rendered_env_builds_settings_with_container_endpoints(profile: str) -> None:
    settings = validate_env(render_env(profile))  # type: ignore[arg-type]
    assert "127.0.0.1" not in settings.kafka.bootstrap_servers
    assert settings.clickhouse.host != "127.0.0.1"
    for component in DEPLOYED:
        http = component.http(settings)
        assert http.host == "0.0.0.0", component.name
        # Ports stay those of the local stack: one set of numbers everywhere.
        assert http.port == component.http(Settings()).port, component.name
    assert settings.topics.partitions % 6 == 0
    assert settings.archive.target.startswith("s3://")


def test_k8s_env_leaves_secrets_to_the_secret() -> None:
    k8s = render_env("k8s")
    assert not SECRET_FIELDS & set(k8s)
    compose = render_env("compose")
    assert {k: compose[k] for k in DEV_CREDENTIALS} == dict(DEV_CREDENTIALS)


def test_k8s_runs_replicated_topics() -> None:
    settings = validate_env(render_env("k8s"))
    assert settings.topics.replication_factor == 3
    assert settings.topics.min_insync_replicas == 2


@pytest.mark.parametrize(
    "env",
    [
        {"AGENTWATCH_TOPICS__PARTITONS": "3"},  # misspelt field
        {"AGENTWATCH_TOPICS__PARTITIONS": "many"},  # bad value
        {"AGENTWATCH_NO_SUCH_SECTION__X": "1"},  # unknown section, which pydantic would ignore
        {"KAFKA_BOOTSTRAP": "x"},  # not ours
    ],
)
def test_validate_env_rejects_drift(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        validate_env(env)


def test_http_section_set_from_env_keeps_its_default_port() -> None:
    settings = validate_env({"AGENTWATCH_WORKER_HTTP__HOST": "0.0.0.0"})
    assert (settings.worker_http.host, settings.worker_http.port) == ("0.0.0.0", 6066)


def test_cli_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compose", "--yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f'{k}: "{v}"' for k, v in render_env("compose").items()]


def test_every_registered_component_is_deployed_or_host_local() -> None:
    # A new component in pipeline/stack/components.py must be added to compose and k8s (the
    # other tests then fail until it is) or declared host-local on purpose.
    names = {c.name for c in COMPONENTS}
    assert names >= HOST_LOCAL_COMPONENTS
    assert {c.name for c in DEPLOYED} == names - HOST_LOCAL_COMPONENTS
