"""The aggregates loop (processors/aggregates_loop.py), built from settings; processors/loop_stage.py
runs it in the worker when ``worker.aggregates_runtime`` is ``librdkafka`` (the default)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from pipeline.serde import serde_from_settings
from pipeline.settings import Settings
from processors.aggregates_loop import (
    AggregatesLoop,
    AggregatesLoopConfig,
    AggregatesMetrics,
    Folds,
    LoopClients,
)
from processors.loop_stage import group_consumer_config, transactional_id
from processors.patterns.agent import pattern_config
from processors.patterns.processor import PatternProcessor
from processors.state_store import MemoryStore
from processors.tables import PATTERN_TABLE, WIDGET_TABLE, changelog_topic
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import WidgetProcessor


def aggregates_group(settings: Settings) -> str:
    """Not the Faust app's group, whose members speak Faust's own assignment protocol."""
    return f"{settings.worker.app_id}-aggregates"


def build_aggregates_loop(settings: Settings, registry: CollectorRegistry) -> AggregatesLoop:
    conf = settings.worker
    kafka = settings.kafka
    transactional = conf.processing_guarantee == "exactly_once"
    # Only committed events; the offset fetch on assignment waits for a previous owner's
    # pending transaction, which the state recovery relies on (processors/aggregates_loop.py).
    consumer = Consumer(group_consumer_config(settings, aggregates_group(settings),
                                              conf.fetch_max_wait_ms))
    recovery = Consumer({
        **kafka.client_config(),
        # Never joins it: the reader assigns partitions itself and commits nothing.
        "group.id": f"{aggregates_group(settings)}-recovery",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 10,
    })
    base: dict[str, Any] = {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.producer.compression,
        # Alerts are keyed by session: the Java client's partitioner, as Faust's producer had.
        "partitioner": "murmur2_random",
    }
    updates = Producer({**base, "linger.ms": 2})
    producer_conf = {**base, "linger.ms": 5, "message.max.bytes": conf.max_event_bytes + 64 * 1024}
    if transactional:
        producer_conf["transactional.id"] = transactional_id(settings, "aggregates")
        producer_conf["transaction.timeout.ms"] = int(conf.transaction_timeout_s * 1000)
    widgets_conf, patterns_conf = settings.widgets, settings.patterns
    widget_store = MemoryStore(changelog_topic(conf.app_id, WIDGET_TABLE))
    pattern_store = MemoryStore(changelog_topic(conf.app_id, PATTERN_TABLE))
    widgets = WidgetProcessor(widget_store, Coalescer(widgets_conf.coalesce_interval_ms / 1000.0),
                              settings.topics.partitions)
    patterns = PatternProcessor(pattern_store, pattern_config(patterns_conf),
                                notifications=patterns_conf.notifications)
    return AggregatesLoop(
        LoopClients(consumer, lambda: Producer(producer_conf), updates, recovery),
        Folds(widgets, widget_store, patterns, pattern_store), serde_from_settings(settings),
        AggregatesLoopConfig(
            events_topic=settings.topics.events,
            widgets_topic=settings.topics.widgets,
            patterns_topic=settings.topics.patterns,
            transactional=transactional,
            checkpoint_interval_s=widgets_conf.checkpoint_interval_ms / 1000.0,
            checkpoint_max_events=widgets_conf.checkpoint_max_events,
            stall_check_interval_s=patterns_conf.stall_check_interval_s,
            stall_after_s=2 * conf.transaction_timeout_s,
        ),
        AggregatesMetrics(registry),
    )
