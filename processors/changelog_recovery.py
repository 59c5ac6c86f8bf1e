"""Read changelog partitions from their beginning to their end: how the aggregates get their state back.

The end is where librdkafka reports ``_PARTITION_EOF`` under ``read_committed``: the last stable
offset, so records of a transaction still open are not read (and control markers or aborted
records at the tail never leave the reader waiting for an offset it will not be given, as a
high-watermark target would). The caller makes sure no transaction that matters is still open:
it first fetches the input's committed offsets, which waits for a previous owner's pending
transaction (processors/aggregates_loop.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from processors.kafka_calls import StageFailedError

log = logging.getLogger(__name__)

_CONSUME_BATCH = 2000
_WAIT_S = 0.2


class StoppedError(Exception):
    """The loop was asked to stop while a recovery was still reading."""


def read_to_end(consumer: Consumer, partitions: Iterable[tuple[str, int]],
                stop: threading.Event) -> list[tuple[str, bytes | None, bytes | None]]:
    """Every record (topic, key, value) of ``partitions``, in log order per partition.

    ``consumer`` is a reader of its own (``enable.partition.eof``, ``read_committed``, no
    subscription); it is left unassigned. Broker errors are waited out while the loop runs.
    """
    wanted = sorted(set(partitions))
    if not wanted:
        return []
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for topic, p in wanted])
    left = set(wanted)
    out: list[tuple[str, bytes | None, bytes | None]] = []
    try:
        while left:
            if stop.is_set():
                raise StoppedError("stopped while recovering state")
            for message in consumer.consume(_CONSUME_BATCH, _WAIT_S):
                err = message.error()
                where = (message.topic(), message.partition())
                if err is None:
                    if where in left:
                        out.append((where[0], message.key(), message.value()))
                elif err.code() == KafkaError._PARTITION_EOF:
                    left.discard(where)
                elif err.fatal():
                    raise StageFailedError(f"changelog reader: {err.str()}")
                else:
                    log.warning("changelog reader error", extra={"error": err.str()})
    finally:
        consumer.unassign()
    return out
