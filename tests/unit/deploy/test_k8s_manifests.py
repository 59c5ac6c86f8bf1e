"""deploy/k8s/: every manifest parses and agrees with the component registry and the settings."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from deploy_helpers import K8S_DIR, load_yaml, load_yaml_all

from pipeline.deploy_config import SECRET_FIELDS, deployed_components, render_env, validate_env
from pipeline.settings import Settings
from pipeline.stack.components import ComponentSpec

WORKLOADS = {"Deployment", "StatefulSet"}
# Consumer group and input topic per Kafka-consuming component (what lag-based scaling reads).
S = Settings()
LAG_SCALED = {
    "worker": (S.worker.ingest_group, S.topics.ingest),
    "clickhouse-sink": (S.clickhouse_sink.group_id, S.topics.events),
    "archive-sink": (S.archive.consumer_group, S.topics.events),
}

DEPLOYED = deployed_components()


@functools.cache
def _docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in load_yaml_all(path):
            doc["__file"] = path.name
            docs.append(doc)
    return docs


def _find(kind: str | set[str], name: str) -> dict[str, Any]:
    kinds = {kind} if isinstance(kind, str) else kind
    found = [d for d in _docs() if d["kind"] in kinds and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _container(component: ComponentSpec) -> dict[str, Any]:
    workload = _find(WORKLOADS, component.name)
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def test_every_manifest_has_kind_name_namespace() -> None:
    docs = _docs()
    assert docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"], doc["__file"]
        if doc["kind"] not in {"Kustomization", "Namespace"}:
            assert doc["metadata"]["namespace"] == "agentwatch", doc["__file"]


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kust = load_yaml(K8S_DIR / "kustomization.yaml")
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kust["resources"]) == files


@pytest.mark.parametrize("component", DEPLOYED, ids=lambda c: c.name)
def test_probes_hit_health_on_the_component_port(component: ComponentSpec) -> None:
    container = _container(component)
    port = component.http(S).port
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get == {"path": "/health", "port": "http"}, probe
    # Liveness must be more patient than readiness, or a slow start is a restart loop.
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["initialDelaySeconds"] >= ready["initialDelaySeconds"]
    assert live["failureThreshold"] * live["periodSeconds"] >= 30
    annotations = _find(WORKLOADS, component.name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("component", DEPLOYED, ids=lambda c: c.name)
def test_container_runs_its_command_with_config_and_secrets(component: ComponentSpec) -> None:
    container = _container(component)
    assert tuple(container["args"]) == component.command
    assert container["envFrom"] == [
        {"configMapRef": {"name": "agentwatch-env"}},
        {"secretRef": {"name": "agentwatch-secrets"}},
    ]
    requests = container["resources"]["requests"]
    limits = container["resources"]["limits"]
    assert set(requests) == set(limits) == {"cpu", "memory"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert render_env("k8s")["AGENTWATCH_STACK__DIR"] in mounts
    workload = _find(WORKLOADS, component.name)
    grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 30  # the worker's own shutdown grace (processors/worker.py SHUTDOWN_GRACE_S)


@pytest.mark.parametrize("component", DEPLOYED, ids=lambda c: c.name)
def test_service_per_component(component: ComponentSpec) -> None:
    service = _find("Service", component.name)
    workload = _find(WORKLOADS, component.name)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": component.http(S).port, "targetPort": "http"}
    ]
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_configmap_is_the_rendered_env() -> None:
    configmap = _find("ConfigMap", "agentwatch-env")
    assert configmap["data"] == render_env("k8s")
    validate_env(configmap["data"])


def test_secret_template_names_exactly_the_secret_fields() -> None:
    secret = load_yaml(K8S_DIR / "secret.example.yaml")
    assert set(secret["stringData"]) == SECRET_FIELDS
    validate_env(render_env("k8s") | secret["stringData"])


@pytest.mark.parametrize("name", sorted(LAG_SCALED))
def test_lag_hpa_targets_the_group_and_topic(name: str) -> None:
    group, topic = LAG_SCALED[name]
    workload = _find(WORKLOADS, name)
    assert workload["metadata"]["annotations"]["agentwatch.dev/consumer-group"] == group
    hpa = _find("HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": workload["kind"], "name": name}
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    assert metric["name"] == "kafka_consumergroup_lag"
    assert metric["selector"]["matchLabels"] == {"consumergroup": group, "topic": topic}
    assert f'consumergroup="{group}"' in hpa["metadata"]["annotations"]["agentwatch.dev/lag-metric"]
    # More consumers than partitions sit idle: the partition count caps the replicas.
    partitions = int(render_env("k8s")["AGENTWATCH_TOPICS__PARTITIONS"])
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    assert workload["spec"]["replicas"] == hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("name", ["collector", "gateway"])
def test_http_front_ends_scale_on_cpu(name: str) -> None:
    hpa = _find("HorizontalPodAutoscaler", name)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_collector_spool_is_persistent() -> None:
    collector = _find(WORKLOADS, "collector")
    assert collector["kind"] == "StatefulSet"
    claims = [c["metadata"]["name"] for c in collector["spec"]["volumeClaimTemplates"]]
    assert "state" in claims


def test_topics_job_runs_before_components() -> None:
    job = _find("Job", "kafka-topics")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["topics"]


def test_schema_job_applies_the_cluster_ddl() -> None:
    job = _find("Job", "clickhouse-schema")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "pipeline.cluster_ddl", "apply"]
    assert container["envFrom"][0] == {"configMapRef": {"name": "agentwatch-env"}}
