"""The first stage inside the Faust worker: runs processors/ingest_loop.py on a thread of its own.

A ``mode.Service`` so it starts and stops with the worker (SIGTERM included) next to the Faust
app's agents; the loop itself blocks in librdkafka calls, which must never run on the event
loop. A loop that fails crashes the whole worker (exit 1): a restarted process resumes from the
last committed transaction, nothing is half-done.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from confluent_kafka import Consumer, Producer
from mode import Service

from pipeline.settings import Settings
from processors.ingest_loop import IngestLoop, IngestLoopConfig, LoopSnapshot
from processors.metrics import WorkerMetrics
from processors.pool import ProcessingPool
from processors.validate import EventProcessor

log = logging.getLogger(__name__)

_STOP_WAIT_S = 25.0
"""Longest on_stop waits for the loop's thread (the worker exits hard after 30 s anyway)."""


def transactional_id(settings: Settings) -> str:
    """Stable across restarts of the same worker, so a restart fences its own zombie at once
    instead of waiting out ``transaction_timeout_s``; unique per worker on a host (its port)."""
    instance = settings.worker.instance_id or f"{socket.gethostname()}-{settings.worker_http.port}"
    return f"{settings.worker.app_id}-ingest-{instance}"


def build_loop(settings: Settings, processor: EventProcessor, metrics: WorkerMetrics) -> IngestLoop:
    conf = settings.worker
    kafka = settings.kafka
    transactional = conf.processing_guarantee == "exactly_once"
    consumer = Consumer({
        **kafka.client_config(),
        "group.id": conf.ingest_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Eager: a revoke takes the whole assignment, between two batches (ingest_loop.py).
        "partition.assignment.strategy": "range,roundrobin",
        "session.timeout.ms": int(conf.session_timeout_s * 1000),
        "heartbeat.interval.ms": int(conf.heartbeat_interval_s * 1000),
        # read_committed also makes the offset fetch on assignment wait for a previous owner's
        # pending transactional offsets (require_stable, KIP-447).
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 65_536,
    })
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
        producer_conf["transactional.id"] = transactional_id(settings)
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


class IngestStage(Service):
    """Starts the loop's thread with the worker and joins it on stop."""

    def __init__(self, factory: Callable[[], IngestLoop],
                 on_crash: Callable[[BaseException], Coroutine[Any, Any, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = factory
        self._ingest: IngestLoop | None = None
        self._on_crash = on_crash
        self._stop_flag = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def snapshot(self) -> LoopSnapshot:
        ingest = self._ingest
        return LoopSnapshot(False, (), None) if ingest is None else ingest.snapshot()

    async def on_start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="agentwatch-ingest", daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self._stop_flag.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, _STOP_WAIT_S)

    def _run(self) -> None:
        try:
            # Built here, not with the worker: the clients connect at once, and a pool takes a
            # second or two to spawn, which must not block the event loop.
            self._ingest = self._factory()
            self._ingest.run(self._stop_flag)
        except BaseException as exc:  # the worker must go down with it, whatever it was
            log.exception("the ingest stage failed; stopping the worker")
            if self._event_loop is not None and not self._stop_flag.is_set():
                asyncio.run_coroutine_threadsafe(self._on_crash(exc), self._event_loop)
