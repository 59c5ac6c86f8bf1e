"""Fixtures for the real services, and only here.

One fixture API, three sources, tried in order:
1. endpoints from the environment (AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS, AGENTWATCH_CLICKHOUSE__HOST
   and __PORT, AGENTWATCH_S3__ENDPOINT_URL) when AGENTWATCH_TEST_SERVICES=env;
2. testcontainers, when a Docker engine answers;
3. the local stack (`agentwatch up --services-only`), started if it is not already healthy and
   stopped again at the end if this session started it.
Nothing is ever skipped for a missing service: a fixture that cannot get one fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.settings import ClickHouseSettings, Settings, load_settings


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    clickhouse: ClickHouseSettings
    s3_endpoint: str
    source: str


def _docker_engine_available() -> bool:
    if not os.path.exists("/var/run/docker.sock") and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _from_env(settings: Settings) -> Services:
    endpoint = settings.s3.endpoint_url
    if not endpoint:
        raise RuntimeError("AGENTWATCH_TEST_SERVICES=env needs AGENTWATCH_S3__ENDPOINT_URL")
    return Services(settings.kafka.bootstrap_servers, settings.clickhouse, endpoint, "env")


def _from_testcontainers(stack: list[Any], settings: Settings) -> Services:
    from testcontainers.clickhouse import ClickHouseContainer
    from testcontainers.kafka import KafkaContainer
    from testcontainers.minio import MinioContainer

    kafka = KafkaContainer().with_kraft()
    ch = ClickHouseContainer()
    minio = MinioContainer()
    for container in (kafka, ch, minio):
        container.start()
        stack.append(container)
    ch_settings = settings.clickhouse.model_copy(
        update={"host": ch.get_container_host_ip(), "port": int(ch.get_exposed_port(9000)),
                "http_port": int(ch.get_exposed_port(8123)), "user": ch.username,
                "password": ch.password})
    cfg = minio.get_config()
    return Services(kafka.get_bootstrap_server(), ch_settings, f"http://{cfg['endpoint']}",
                    "testcontainers")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    settings = load_settings()
    mode = os.environ.get("AGENTWATCH_TEST_SERVICES", "auto")
    if mode == "env":
        yield _from_env(settings)
        return
    if mode in {"auto", "testcontainers"} and _docker_engine_available():
        containers: list[Any] = []
        try:
            yield _from_testcontainers(containers, settings)
        finally:
            for container in reversed(containers):
                container.stop()
        return
    from pipeline.stack.manager import LocalStack

    stack = LocalStack(settings, say=lambda _msg: None)
    already = stack.status()
    infra = [s for s in already.services if s.name.startswith(("kafka", "clickhouse", "s3"))]
    # Stop at the end only what this session started from nothing: a stack that was merely
    # unhealthy (another session restarting it) belongs to someone else.
    started_here = not any(s.running for s in infra)
    stack.up_services()
    try:
        yield Services(stack.kafka.bootstrap_servers(), settings.clickhouse,
                       stack.s3.endpoint, "local-stack")
    finally:
        if started_here and os.environ.get("AGENTWATCH_TEST_KEEP_STACK") != "1":
            stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    return services.kafka_bootstrap


@pytest.fixture(scope="session")
def clickhouse(services: Services) -> ClickHouseSettings:
    return services.clickhouse


@pytest.fixture(scope="session")
def s3_endpoint(services: Services) -> str:
    return services.s3_endpoint


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names for topics, groups, databases and buckets that no other test (or run) shares."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]

    def make(prefix: str = "t") -> str:
        return f"{prefix}_{base}_{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def clickhouse_db(clickhouse: ClickHouseSettings, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A throwaway database, dropped after the test."""
    from pipeline.migrations import client

    name = unique_name("db")
    conn = client(clickhouse)
    conn.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        conn.disconnect()
        _drop_database(clickhouse, name)


def _drop_database(clickhouse: ClickHouseSettings, name: str, attempts: int = 3) -> None:
    """DROP DATABASE, again on a fresh connection if it times out: on a loaded 2-core machine a
    drop of a database with many parts took longer than the client's receive timeout (seen in
    2 of ~12 reliability runs); the drop itself completed on the server."""
    from clickhouse_driver.errors import SocketTimeoutError

    from pipeline.migrations import client

    for attempt in range(attempts):
        conn = client(clickhouse)
        try:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            return
        except SocketTimeoutError:
            if attempt == attempts - 1:
                raise
        finally:
            conn.disconnect()


@pytest.fixture
def kafka_topic(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """Factory: creates a fresh topic (default 1 partition) and returns its name."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(prefix: str = "topic", partitions: int = 1, **config: str) -> str:
        name = unique_name(prefix).replace("_", ".")
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)],
            operation_timeout=30,
        )
        futures[name].result()
        created.append(name)
        return name

    yield make
    if created:
        for fut in admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()
