"""The first stage's loop (processors/ingest_loop.py) built from settings; processors/loop_stage.py
runs it."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer

from pipeline.settings import Settings
from processors.ingest_loop import IngestLoop, IngestLoopConfig
from processors.loop_stage import group_consumer_config, transactional_id
from processors.metrics import WorkerMetrics
from processors.pool import ProcessingPool
from processors.validate import EventProcessor


def build_loop(settings: Settings, processor: EventProcessor, metrics: WorkerMetrics) -> IngestLoop:
    conf = settings.worker
    kafka = settings.kafka
    transactional = conf.processing_guarantee == "exactly_once"
    consumer = Consumer(group_consumer_config(settings, conf.ingest_group, 100))
    producer_conf: dict[str, Any] = {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": settings.producer.compression,
        # The same partitioner as every producer of the ingest topic: a session's events land
        # on one events partition, where its widgets are folded.
        "partitioner": settings.producer.partitioner,
        # Events are bounded by max_event_bytes (larger ones are dead-lettered), dead letters by
        # the excerpt; headroom for the record overhead.
        "message.max.bytes": conf.max_event_bytes + 64 * 1024,
    }
    if transactional:
        producer_conf["transactional.id"] = transactional_id(settings, "ingest")
        producer_conf["transaction.timeout.ms"] = int(conf.transaction_timeout_s * 1000)
    pool = ProcessingPool(settings, conf.processes, processor) if conf.processes > 1 else None
    return IngestLoop(
        consumer, lambda: Producer(producer_conf), processor,
        IngestLoopConfig(
            ingest_topic=settings.topics.ingest,
            events_topic=settings.topics.events,
            dlq_topic=settings.topics.dlq,
            transactional=transactional,
            batch_max=conf.batch_max,
            poll_timeout_s=conf.batch_within_ms / 1000.0,
            min_batch_interval_s=conf.min_batch_interval_ms / 1000.0,
            stall_after_s=2 * conf.transaction_timeout_s,
        ),
        metrics,
        pool=pool,
    )
