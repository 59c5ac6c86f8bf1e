"""`agentwatch sink clickhouse`: loads Kafka topics into ClickHouse with exactly-once effect.

Wiring only: one shared batching loop (``consumers.base``) per topic, each in its own thread
with its own consumer group and a ``ClickHouseSink`` for its table:

* ``agent.telemetry.events``   -> ``telemetry_events`` (+ ``sessions``, + rollups by views)
* ``agent.telemetry.patterns`` -> ``pattern_alerts``   (``clickhouse_sink.load_patterns``)
* ``agent.telemetry.dlq``      -> ``dead_letters``     (``clickhouse_sink.load_dead_letters``)

``/health`` and ``/metrics`` are served on ``clickhouse_sink_http``; SIGTERM stops every loop
(last flush, commit, close). A loop that dies (a fatal Kafka error) ends the process with
status 1 so its supervisor restarts it; ClickHouse outages never do (see writer.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from consumers.base import BatchingConsumer
    from consumers.clickhouse.writer import TableSpec
    from pipeline.serde import AvroSerde
    from pipeline.settings import Settings

log = logging.getLogger("agentwatch.clickhouse_sink")


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--topic", help="events topic to load (default: settings.topics.events)")


def run(args: argparse.Namespace) -> int:
    from pipeline.observability import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    if args.topic:
        settings = settings.model_copy(
            update={"topics": settings.topics.model_copy(update={"events": args.topic})})
    configure_logging(settings.log_level, settings.log_format, "clickhouse-sink")
    return asyncio.run(serve(settings))


class LoggedDeadLetters:
    """The DLQ loader's own dead letters: logged and counted, never produced back to the DLQ
    topic it reads (that would loop forever on a letter ClickHouse refuses)."""

    def publish(self, letter: Mapping[str, object], key: bytes | None) -> None:
        log.error("dead letter could not be loaded into ClickHouse; dropped",
                  extra={"error_kind": letter.get("error_kind"),
                         "error": letter.get("error_message"),
                         "source_topic": letter.get("source_topic"),
                         "source_offset": letter.get("source_offset")})

    def flush(self, timeout_s: float) -> None:
        return None


def decoder(serde: AvroSerde, record_name: str) -> Callable[[bytes], dict[str, Any]]:
    """Deserializer of one record type; anything else on the topic is a decode error."""
    from pipeline.errors import UnknownSchemaError

    def decode(raw: bytes) -> dict[str, Any]:
        name, record = serde.decode(raw)
        if name != record_name:
            raise UnknownSchemaError(f"expected a {record_name}, got a {name}")
        return record

    return decode


@dataclass(frozen=True)
class _Loader:
    name: str
    topic: str
    group_id: str
    spec: TableSpec
    record_name: str
    with_sessions: bool
    dlq_to_kafka: bool


def _loaders(settings: Settings) -> list[_Loader]:
    from consumers.clickhouse.writer import DEAD_LETTERS, EVENTS, PATTERN_ALERTS
    from pipeline.model import DEAD_LETTER, PATTERN_ALERT, TELEMETRY_EVENT

    cfg = settings.clickhouse_sink
    loaders = [_Loader("telemetry_events", settings.topics.events, cfg.group_id, EVENTS,
                       TELEMETRY_EVENT, with_sessions=True, dlq_to_kafka=True)]
    if cfg.load_patterns:
        loaders.append(_Loader("pattern_alerts", settings.topics.patterns,
                               f"{cfg.group_id}-patterns", PATTERN_ALERTS, PATTERN_ALERT,
                               with_sessions=False, dlq_to_kafka=True))
    if cfg.load_dead_letters:
        loaders.append(_Loader("dead_letters", settings.topics.dlq, f"{cfg.group_id}-dlq",
                               DEAD_LETTERS, DEAD_LETTER, with_sessions=False, dlq_to_kafka=False))
    return loaders


def build_loops(settings: Settings, registry: Any, dead_letters: Any) -> list[BatchingConsumer[Any]]:
    """One batching loop per loaded topic (also used by tests and the benchmark)."""
    from confluent_kafka import Consumer

    from consumers.base import (
        BatchingConfig,
        BatchingConsumer,
        BatchingMetrics,
        KafkaConsumer,
        commit_reporter,
        consumer_config,
    )
    from consumers.clickhouse.sessions import SessionFolder
    from consumers.clickhouse.writer import ClickHouseSink, ClickHouseSinkMetrics
    from pipeline.retry import RetryPolicy
    from pipeline.serde import serde_from_settings

    cfg = settings.clickhouse_sink
    serde = serde_from_settings(settings)
    batching_metrics = BatchingMetrics(registry)
    sink_metrics = ClickHouseSinkMetrics(registry)
    database = settings.clickhouse.database

    def client_factory() -> Any:
        from clickhouse_driver import Client

        ch = settings.clickhouse
        return Client(host=ch.host, port=ch.port, user=ch.user,
                      password=ch.password.get_secret_value(), database=database,
                      connect_timeout=5, send_receive_timeout=cfg.insert_timeout_s)

    def consumer_factory(loader: _Loader) -> Callable[[], KafkaConsumer]:
        def make() -> KafkaConsumer:
            # confluent-kafka's overloaded commit() does not match the base's Protocol for mypy.
            return cast("KafkaConsumer", Consumer(consumer_config(
                settings.kafka, loader.group_id,
                **{"client.id": f"{settings.kafka.client_id}-clickhouse-{loader.name}",
                   "session.timeout.ms": int(cfg.session_timeout_s * 1000),
                   "on_commit": commit_reporter(batching_metrics, loader.name)})))
        return make

    unassigned_s = cfg.unassigned_timeout_s or cfg.session_timeout_s
    loops: list[BatchingConsumer[Any]] = []
    for loader in _loaders(settings):
        sink = ClickHouseSink(client_factory, database, loader.spec, sink_metrics,
                              sessions=SessionFolder(database) if loader.with_sessions else None)
        make_consumer = consumer_factory(loader)
        loops.append(BatchingConsumer(
            name=loader.name,
            consumer=make_consumer(),
            consumer_factory=make_consumer,
            topics=[loader.topic],
            deserialize=decoder(serde, loader.record_name),
            sink=sink,
            dead_letters=dead_letters if loader.dlq_to_kafka else LoggedDeadLetters(),
            metrics=batching_metrics,
            config=BatchingConfig(
                max_records=cfg.batch_max_records, max_age_s=cfg.batch_max_age_s,
                poll_timeout_s=cfg.poll_timeout_s,
                retry=RetryPolicy(initial_s=cfg.retry_initial_s,
                                  max_s=max(cfg.retry_max_s, cfg.retry_initial_s),
                                  max_attempts=None),
                shutdown_flush_timeout_s=cfg.shutdown_timeout_s,
                stage=f"clickhouse_sink.{loader.name}",
                unassigned_timeout_s=unassigned_s,
                rejoin_timeout_s=cfg.rejoin_timeout_s or 2 * unassigned_s),
        ))
    return loops


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); 0 on a clean stop, 1 if a loop died."""
    from confluent_kafka import Producer
    from prometheus_client import CollectorRegistry

    from consumers.dlq import KafkaDeadLetters
    from pipeline.observability import health_app, shutdown_event, start_http
    from pipeline.serde import serde_from_settings

    registry = CollectorRegistry()
    dead_letters = KafkaDeadLetters(
        Producer({**settings.kafka.client_config(), "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 30_000}),
        serde_from_settings(settings), settings.topics.dlq)
    loops = build_loops(settings, registry, dead_letters)

    def health() -> dict[str, Any]:
        parts = {loop.name: loop.health() for loop in loops}
        return {"healthy": all(p["healthy"] for p in parts.values()), "loaders": parts}

    http = settings.clickhouse_sink_http
    runner = await start_http(health_app(registry, health), http.host, http.port)
    stopping = stop if stop is not None else shutdown_event()
    thread_stop = threading.Event()
    tasks = [asyncio.create_task(asyncio.to_thread(loop.run, thread_stop)) for loop in loops]
    log.info("clickhouse sink started", extra={
        "database": settings.clickhouse.database,
        "topics": [loader.topic for loader in _loaders(settings)]})
    waiter = asyncio.create_task(stopping.wait())
    failed = False
    try:
        await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        thread_stop.set()
        waiter.cancel()
        for task in tasks:
            try:
                await task  # each loop's last flush and commit, then consumer and sink close
            except Exception:
                failed = True
                log.exception("a loader stopped with an error")
        dead_letters.close()
        await runner.cleanup()
        log.info("clickhouse sink stopped")
    return 1 if failed else 0
