"""The Faust app of the worker, built from settings; agents are attached by their own modules."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from pipeline.errors import ConfigError
from pipeline.settings import KafkaSettings, Settings


def create_app(settings: Settings) -> faust.App:
    worker = settings.worker
    kafka = settings.kafka
    return faust.App(
        worker.app_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        broker_client_id=f"{kafka.client_id}-worker",
        broker_credentials=_credentials(kafka),
        processing_guarantee=worker.processing_guarantee,
        broker_commit_interval=worker.commit_interval_ms / 1000.0,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=worker.heartbeat_interval_s,
        # An event can reach max_event_bytes; the producer's default cap (1,000,000) is lower.
        producer_max_request_size=worker.max_event_bytes + 64 * 1024,
        # The aggregates fill whole record batches (processors/batch_send.py): bigger ones mean
        # fewer futures and produce requests per event.
        producer_max_batch_size=256 * 1024,
        consumer_auto_offset_reset="earliest",
        # Our own aiohttp server serves /health and /metrics on settings.worker_http.
        web_enabled=False,
        # The leader topic is only needed by Faust's table-standby assignment; one topic less
        # to create on Kafka 4 (see processors/worker.py for the topics created up front).
        topic_disable_leader=True,
        topic_replication_factor=settings.topics.replication_factor,
        topic_partitions=settings.topics.partitions,
        store="memory://",
        # The check compares the changelog's read_committed end with the offset this process
        # read up to in an earlier recovery; after a worker leaves a group the survivor found
        # its own earlier position above the end (docs/worker.md) and crashed, although there
        # is nothing left to read: the tables are rebuilt from what the changelog holds.
        recovery_consistency_check=False,
        datadir=str(settings.stack.dir / "worker" / worker.app_id),
        autodiscover=False,
    )


def _credentials(kafka: KafkaSettings) -> Any:
    protocol = kafka.security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl.create_default_context())
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username or "",
            password=password,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=ssl.create_default_context() if protocol == "SASL_SSL" else None,
        )
    raise ConfigError(f"AGENTWATCH_KAFKA__SECURITY_PROTOCOL: unsupported value {protocol!r}")
