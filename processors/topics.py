"""The Faust topics of the worker, declared once from settings.

Names and partition counts are decided in pipeline/topics.py (created up front by `agentwatch
up`/`topics` and by the worker itself); here they only get their codecs. Ingest is not a Faust
topic: the first stage reads it with librdkafka (processors/ingest_loop.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from pipeline.serde import AvroSerde
from pipeline.settings import Settings
from processors.codec import avro_codecs


@dataclass(frozen=True)
class WorkerTopics:
    events: Any
    """agent.telemetry.events: TelemetryEvent (Avro), valid and redacted."""
    dlq: Any
    """agent.telemetry.dlq: DeadLetter (Avro)."""
    widgets: Any
    """agent.telemetry.widgets: WidgetUpdate (Avro)."""
    patterns: Any
    """agent.telemetry.patterns: PatternAlert (Avro)."""


def define_topics(app: faust.App, settings: Settings, serde: AvroSerde) -> WorkerTopics:
    codecs = avro_codecs(serde)
    names = settings.topics

    def avro(name: str, codec: str) -> Any:
        return app.topic(
            name, key_type=bytes, value_type=None, key_serializer="raw",
            value_serializer=codecs[codec],
        )

    return WorkerTopics(
        events=avro(names.events, "avro-event"),
        dlq=avro(names.dlq, "avro-dead-letter"),
        widgets=avro(names.widgets, "avro-widget"),
        patterns=avro(names.patterns, "avro-pattern"),
    )
