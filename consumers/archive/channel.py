"""Replay channels: where replayed events go (the Kafka replay topic, or any async callable).

The Kafka channel writes the same Avro TelemetryEvent as the live topic, keyed by session_id,
with a ``replay_id`` header, to ``topics.replay``: the widget aggregation can consume it with
the live code path, while the live widgets, the ClickHouse sink and the archive never subscribe
to it, so a replay cannot pollute live aggregates or counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from consumers.archive.replay import REPLAY_ID
from pipeline.errors import TransientError
from pipeline.serde import AvroSerde
from pipeline.settings import KafkaSettings


class KafkaReplayChannel:
    def __init__(self, kafka: KafkaSettings, topic: str, serde: AvroSerde | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self._serde = serde or AvroSerde()
        self._producer = Producer({
            **kafka.client_config(),
            "enable.idempotence": True,
            "linger.ms": 5,
        })
        self._failed: list[str] = []
        self.sent = 0

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed.append(str(err))

    async def emit(self, event: Mapping[str, Any]) -> None:
        value = self._serde.encode_event(event)
        headers: list[tuple[str, str | bytes | None]] = [
            (REPLAY_ID, str(event.get("metadata", {}).get(REPLAY_ID, "")))
        ]
        while True:
            try:
                self._producer.produce(self.topic, key=str(event["session_id"]).encode(),
                                       value=value, headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                # Local queue full: let deliveries drain without blocking the event loop.
                await asyncio.to_thread(self._producer.poll, 0.1)
        self._producer.poll(0)
        self.sent += 1

    async def close(self, timeout_s: float = 30.0) -> None:
        """Wait for every event to be acknowledged; raise if any could not be delivered."""
        remaining = await asyncio.to_thread(self._producer.flush, timeout_s)
        if remaining:
            raise TransientError(f"{remaining} replayed events not delivered to {self.topic}")
        if self._failed:
            raise TransientError(
                f"{len(self._failed)} replayed events failed on {self.topic}: {self._failed[0]}")
