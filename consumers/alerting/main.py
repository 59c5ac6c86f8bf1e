"""`agentwatch alerts`: consume the patterns topic and deliver each alert to the configured channels.

The shared batching loop (``consumers.base``) runs in a thread and commits offsets only after the
sink returned, i.e. after every alert of the batch was delivered, queued durably for the digest,
or dead-lettered. Channels are async and live on the main event loop beside /health and /metrics;
the sink hands each batch over to that loop and waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from consumers.alerting.channels import Alert, Channel, TerminalChannel
from consumers.alerting.dispatch import DeadLetterFile, Dispatcher, DispatchMetrics
from consumers.alerting.email import EmailDigestChannel, SmtpConfig
from consumers.alerting.webhook import WebhookChannel
from pipeline.errors import ConfigError, UnknownSchemaError
from pipeline.model import PATTERN_ALERT
from pipeline.retry import RetryPolicy
from pipeline.serde import AvroSerde
from pipeline.settings import AlertSettings, Settings
from pipeline.sinks import Batch, RejectFn, TopicPartition

log = logging.getLogger("agentwatch.alerts")


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--channels", default=None,
                        help="comma-separated channels, overriding alerts.channels "
                             "(terminal, webhook, email)")


class AlertSink:
    """``pipeline.sinks.Sink`` over the dispatcher; called from the consumer thread."""

    def __init__(self, dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop) -> None:
        self._dispatcher = dispatcher
        self._loop = loop

    def write(self, batch: Batch[Alert], reject: RejectFn) -> None:
        asyncio.run_coroutine_threadsafe(self._handle(batch), self._loop).result()

    async def _handle(self, batch: Batch[Alert]) -> None:
        stale = 0
        for record in batch.records():
            if not await self._dispatcher.dispatch(record.value, record.timestamp_ms):
                stale += 1
        if stale:
            log.warning("stale alerts not delivered (older than alerts.max_age_s)",
                        extra={"alerts": stale, "batch": len(batch)})

    def revoke(self, partitions: Sequence[TopicPartition]) -> None:
        return None

    def close(self) -> None:
        return None


def alert_decoder(serde: AvroSerde) -> Any:
    def decode(raw: bytes) -> Alert:
        name, record = serde.decode(raw)
        if name != PATTERN_ALERT:
            raise UnknownSchemaError(f"expected a PatternAlert, got a {name}")
        return record

    return decode


def build_channels(
    cfg: AlertSettings, names: Sequence[str], state_dir: Path, stop: asyncio.Event,
    dead: DeadLetterFile,
) -> tuple[list[Channel], EmailDigestChannel | None]:
    channels: list[Channel] = []
    digest: EmailDigestChannel | None = None
    for name in names:
        if name == "terminal":
            channels.append(TerminalChannel())
        elif name == "webhook":
            if not cfg.webhook_url:
                raise ConfigError("AGENTWATCH_ALERTS__WEBHOOK_URL: the webhook channel needs a URL")
            policy = RetryPolicy(initial_s=cfg.webhook_backoff_s, max_s=60.0,
                                 max_attempts=cfg.webhook_max_attempts)
            channels.append(WebhookChannel(cfg.webhook_url, slack=cfg.webhook_slack,
                                           timeout_s=cfg.webhook_timeout_s, policy=policy,
                                           stop=stop))
        elif name == "email":
            if not cfg.smtp_to:
                raise ConfigError("AGENTWATCH_ALERTS__SMTP_TO: the email channel needs recipients")
            smtp = SmtpConfig(
                host=cfg.smtp_host, port=cfg.smtp_port, sender=cfg.smtp_from,
                recipients=cfg.smtp_to, starttls=cfg.smtp_starttls, username=cfg.smtp_username,
                password=cfg.smtp_password.get_secret_value() if cfg.smtp_password else None)
            digest = EmailDigestChannel(
                smtp, state_dir / "digest-pending.jsonl", max_attempts=cfg.smtp_max_attempts,
                on_give_up=lambda alerts, err: dead.write(alerts, "email", err))
            channels.append(digest)
        else:
            raise ConfigError(f"AGENTWATCH_ALERTS__CHANNELS: unknown channel {name!r}")
    return channels, digest


async def serve(settings: Settings, *, channel_names: Sequence[str] | None = None,
                stop: asyncio.Event | None = None) -> None:
    from confluent_kafka import Consumer, Producer
    from prometheus_client import CollectorRegistry

    from consumers.base import (
        BatchingConfig,
        BatchingConsumer,
        BatchingMetrics,
        KafkaConsumer,
        commit_reporter,
        consumer_config,
    )
    from consumers.dlq import KafkaDeadLetters
    from pipeline.observability import health_app, shutdown_event, start_http
    from pipeline.serde import serde_from_settings

    loop = asyncio.get_running_loop()
    stop = stop or shutdown_event(loop)
    cfg = settings.alerts
    state_dir = cfg.resolved_state_dir(settings.stack.dir)
    dead = DeadLetterFile(state_dir / "dead-letters.jsonl")
    # Retries end early on shutdown; the alert then stays uncommitted for the next start.
    channel_stop = asyncio.Event()
    channels, digest = build_channels(cfg, channel_names or cfg.channels, state_dir, channel_stop,
                                      dead)
    registry = CollectorRegistry()
    dispatcher = Dispatcher(channels, dead, DispatchMetrics(registry),
                            min_severity=cfg.min_severity, dedup_capacity=cfg.dedup_capacity,
                            max_age_s=cfg.max_age_s)
    serde = serde_from_settings(settings)
    producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True})
    dlq = KafkaDeadLetters(producer, serde, settings.topics.dlq)
    batching_metrics = BatchingMetrics(registry)

    def make_consumer() -> KafkaConsumer:
        # confluent-kafka's stubs type commit() with overloads the Protocol does not spell out.
        return cast("KafkaConsumer", Consumer(consumer_config(
            settings.kafka, cfg.consumer_group,
            on_commit=commit_reporter(batching_metrics, "alerts"))))

    batching: BatchingConsumer[Alert] = BatchingConsumer(
        name="alerts",
        consumer=make_consumer(), consumer_factory=make_consumer,
        topics=[settings.topics.patterns], deserialize=alert_decoder(serde),
        sink=AlertSink(dispatcher, loop), dead_letters=dlq, metrics=batching_metrics,
        config=BatchingConfig(max_records=500, max_age_s=0.1, stage="alerts",
                              shutdown_flush_timeout_s=10.0))

    def health() -> dict[str, Any]:
        body = batching.health()
        body["channels"] = [c.name for c in channels]
        body["dead_letter_file"] = str(dead.path)
        return body

    runner = await start_http(health_app(registry, health), settings.alerts_http.host,
                              settings.alerts_http.port)
    thread_stop = threading.Event()
    consume = asyncio.create_task(asyncio.to_thread(batching.run, thread_stop))
    digest_stop = asyncio.Event()
    digest_task = (asyncio.create_task(digest.run(cfg.digest_interval_s, digest_stop))
                   if digest is not None else None)
    log.info("alerting consumer started", extra={
        "channels": [c.name for c in channels], "topic": settings.topics.patterns})
    try:
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, consume}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        channel_stop.set()
        thread_stop.set()
        with contextlib.suppress(Exception):
            await consume
        digest_stop.set()
        if digest_task is not None:
            await digest_task
        await dispatcher.close()
        await asyncio.to_thread(dlq.close)
        await runner.cleanup()
    if consume.done() and consume.exception() is not None:
        raise consume.exception()  # type: ignore[misc]
    log.info("alerting consumer stopped")


def run(args: argparse.Namespace) -> int:
    from pipeline.observability import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, "alerts")
    names = [n.strip() for n in args.channels.split(",")] if args.channels else None
    asyncio.run(serve(settings, channel_names=names))
    return 0
