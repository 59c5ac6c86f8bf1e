"""The first stage's agent: ingest bytes -> EventProcessor -> events / dlq, one batch at a time.

A thin shell: the work per message is ``EventProcessor.process`` (pure, processors/validate.py);
this module only batches, produces, acks and commits. Concurrency stays 1 (faust-streaming
issue 606: with more, offsets can be committed past a message still in flight); the worker
scales with partitions and more workers in the consumer group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from mode import CrashingSupervisor

from processors.deadletters import SourceMeta
from processors.delivery import CommitGate, OutputRouter
from processors.metrics import WorkerMetrics
from processors.topics import WorkerTopics
from processors.validate import CleanEvent, EventProcessor

log = logging.getLogger(__name__)

AGENT_NAME = "agentwatch.redact"
_YIELD_EVERY = 256
"""Messages processed between two yields to the loop, so heartbeats and /health stay served."""


@dataclass(frozen=True)
class RedactAgentConfig:
    events_topic: str
    dlq_topic: str
    batch_max: int
    batch_within_s: float


def attach_redact_agent(
    app: faust.App,
    topics: WorkerTopics,
    processor: EventProcessor,
    config: RedactAgentConfig,
    *,
    metrics: WorkerMetrics,
    gate: CommitGate,
) -> Any:
    """Register the agent on ``app``; returns the Faust agent."""

    async def redact(stream: Any) -> None:
        gate.install(app.consumer)
        router = OutputRouter(app)
        async for batch in stream.take_events(config.batch_max, within=config.batch_within_s):
            started = time.perf_counter()
            outcomes = await _process(processor, batch)
            async with gate.sending():
                futures = []
                for event, outcome in zip(batch, outcomes, strict=True):
                    source = event.message.tp
                    if isinstance(outcome, CleanEvent):
                        topic, key = config.events_topic, outcome.key
                    else:
                        topic, key = config.dlq_topic, outcome.key
                    futures.append(await router.send(topic, key, outcome.value, source))
                # A failed delivery raises here, before any input is acked: the batch is not
                # committed and the worker restarts from the last commit.
                await asyncio.gather(*futures)
                for event in batch:
                    await stream.ack(event)
            commit_started = time.perf_counter()
            await app.consumer.commit()
            done = time.perf_counter()
            metrics.commit_seconds.observe(done - commit_started)
            metrics.batch_seconds.observe(done - started)
            metrics.batch_size.observe(len(batch))
            _count(metrics, outcomes)

    # A crashed agent must take the process down: restarting it in place would skip the
    # messages it had taken but not committed, and stall the partition's commits behind them.
    return app.agent(
        topics.ingest, name=AGENT_NAME, concurrency=1, supervisor_strategy=CrashingSupervisor
    )(redact)


async def _process(processor: EventProcessor, batch: list[Any]) -> list[Any]:
    outcomes = []
    for i, event in enumerate(batch):
        message = event.message
        meta = SourceMeta(message.tp.topic, message.tp.partition, message.offset, message.key)
        value = message.value
        outcomes.append(processor.process(value if isinstance(value, bytes) else b"", meta))
        if i % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
    return outcomes


def _count(metrics: WorkerMetrics, outcomes: list[Any]) -> None:
    events = truncated = redacted = 0
    for outcome in outcomes:
        if isinstance(outcome, CleanEvent):
            events += 1
            truncated += len(outcome.truncated)
            redacted += outcome.redacted
        else:
            metrics.dead_letters.labels(outcome.kind.value).inc()
    metrics.messages.labels("event").inc(events)
    metrics.messages.labels("dead_letter").inc(len(outcomes) - events)
    metrics.truncated_fields.inc(truncated)
    metrics.redacted_fields.inc(redacted)
