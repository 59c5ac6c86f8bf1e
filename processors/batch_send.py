"""Send many records to chosen partitions as aiokafka record batches, not one send per record.

Faust's ``Producer.send`` costs a lock, a signal and an aiokafka future per message, more than
rendering a widget or serialising a state; the worker's first stage measured the same
(before it moved to librdkafka). Records of one partition keep their order. Plain (non-transactional)
producer: the aggregates' outputs are at-least-once by design (docs/processors.md).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

Record = tuple[int, bytes | None, bytes]
"""(partition, key, value)."""


async def send_records(app: Any, topic: str, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
    """Queue ``records``; returns the delivery futures (await them before acking the inputs)."""
    if not records:
        return []
    # Faust's aiokafka driver keeps the plain aiokafka producer here (faust-streaming < 0.16).
    producer = app.producer._ensure_producer()
    by_partition: dict[int, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    for partition, key, value in records:
        by_partition[partition].append((key, value))
    futures: list[asyncio.Future[Any]] = []
    for partition, recs in by_partition.items():
        batch, filled = producer.create_batch(), 0
        for key, value in recs:
            if batch.append(key=key, value=value, timestamp=None) is not None:
                filled += 1
                continue
            if filled:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch, filled = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is not None:
                    filled = 1
                    continue
            # Larger than a whole record batch: the single-message path takes it.
            futures.append(await producer.send(topic, value, key=key, partition=partition))
        if filled:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
