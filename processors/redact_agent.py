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

from processors.deadletters import SourceMeta
from processors.delivery import CommitGate, Completed, Output, OutputRouter
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

    done = Completed()

    async def redact(stream: Any) -> None:
        gate.install(app.consumer)
        router = OutputRouter(app)
        in_flight = False
        try:
            async for batch in stream.take_events(config.batch_max, within=config.batch_within_s):
                in_flight = True
                await _handle(batch, stream, router)
                in_flight = False
        except asyncio.CancelledError:
            if in_flight:
                gate.poison("the worker stopped in the middle of a batch")
            raise
        except Exception as exc:
            gate.poison(f"the redact agent failed: {type(exc).__name__}")
            # Take the whole worker down: Faust would restart the agent in place, skipping the
            # messages it had taken but not committed and stalling the partition's commits
            # behind them. A restarted process resumes from the last commit instead.
            log.exception("redact agent failed; stopping the worker")
            await app.crash(exc)
            raise

    async def _handle(batch: list[Any], stream: Any, router: OutputRouter) -> None:
        started = time.perf_counter()
        fresh = [event for event in batch if not done.seen(event.message, router)]
        if len(fresh) < len(batch):
            metrics.rewound.inc(len(batch) - len(fresh))
        outcomes = await _process(processor, fresh)
        outputs = [
            Output(config.events_topic if isinstance(outcome, CleanEvent) else config.dlq_topic,
                   outcome.key, outcome.value, event.message.tp)
            for event, outcome in zip(fresh, outcomes, strict=True)
        ]
        async with gate.sending():
            futures = await router.send_many(outputs)
            # A failed delivery raises here, before any input is acked: the batch is not
            # committed and the worker restarts from the last commit.
            await asyncio.gather(*futures)
            for event in fresh:
                done.record(event.message, router)
            for event in batch:
                await stream.ack(event)
        # From here the batch is complete: Faust's commit timer (worker.commit_interval_ms,
        # through the gate) commits it with its transaction; a commit per batch would cost a
        # few round trips per input partition every batch.
        metrics.batch_seconds.observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(batch))
        _count(metrics, outcomes)

    return app.agent(topics.ingest, name=AGENT_NAME, concurrency=1)(redact)


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
