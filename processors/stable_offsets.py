"""Wait until a group's committed offsets are stable before Faust seeks to them.

With exactly-once the offsets are committed inside the producer's transaction
(``send_offsets_to_transaction``). The broker's group coordinator applies them only when the
transaction's marker reaches ``__consumer_offsets``, which happens *after* ``EndTxn`` returns.
Until then an offset fetch without ``require_stable`` (KIP-447) answers with the previous
offset. aiokafka (which Faust uses) only speaks OffsetFetch v0-v3, which has no such flag, so a
worker that takes over a partition right after its previous owner committed can seek to the
stale offset and commit the same outputs a second time. Measured with the two-worker test
(tests/integration/test_worker_pipeline.py) under CPU load, about 1 run in 5: 30-50 events of a
partition committed twice, the copies right after the originals.

librdkafka's admin client asks with ``require_stable``: the broker refuses with
UNSTABLE_OFFSET_COMMIT while a transactional offset is pending. Asking that until it answers,
then letting Faust fetch, makes Faust's (unstable) fetch read the settled offset: the previous
owner's producer is fenced by then (the new owner starts its transactional producers before it
seeks), so nothing newer can be pending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

_UNSTABLE = KafkaError.UNSTABLE_OFFSET_COMMIT


class StableOffsets:
    """Asks the group coordinator, with ``require_stable``, until no offset is pending.

    Blocking admin calls run in the default executor so the event loop keeps serving; the wait
    is bounded (``timeout_s``): past it Faust seeks anyway (no worse than without this check)
    and a warning says so.
    """

    def __init__(
        self,
        group_id: str,
        admin_factory: Callable[[], Any],
        *,
        timeout_s: float = 10.0,
        retry_s: float = 0.05,
        request_timeout_s: float = 5.0,
    ) -> None:
        self._group_id = group_id
        self._admin_factory = admin_factory
        self._admin: Any = None
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._request_timeout_s = request_timeout_s

    async def wait(self, tps: Collection[tuple[str, int]]) -> bool:
        """True once every offset of ``tps`` is stable; False when the bound ran out."""
        if not tps:
            return True
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        asked = 0
        pending: set[tuple[str, int]] = set()
        while True:
            asked += 1
            pending = await loop.run_in_executor(None, self._pending, list(tps))
            if not pending:
                if asked > 1:
                    log.info("committed offsets became stable", extra={
                        "group": self._group_id, "asked": asked,
                        "waited_ms": round((time.monotonic() - started) * 1000)})
                return True
            if time.monotonic() - started >= self._timeout_s:
                log.warning("committed offsets still unstable; seeking anyway", extra={
                    "group": self._group_id, "partitions": sorted(pending), "asked": asked})
                return False
            await asyncio.sleep(self._retry_s)

    def _pending(self, tps: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Partitions whose committed offset is not stable yet (blocking; runs in a thread)."""
        if self._admin is None:
            self._admin = self._admin_factory()
        request = ConsumerGroupTopicPartitions(
            self._group_id, [TopicPartition(topic, partition) for topic, partition in tps])
        futures = self._admin.list_consumer_group_offsets(
            [request], require_stable=True, request_timeout=self._request_timeout_s)
        try:
            result = futures[self._group_id].result()
        except KafkaException as exc:
            if exc.args and getattr(exc.args[0], "code", lambda: None)() == _UNSTABLE:
                return set(tps)
            # Not a question of stability (coordinator moving, timeout): Faust's own fetch
            # will meet the same condition and handle it; do not hold the seek for it.
            log.warning("stable offset check failed", extra={
                "group": self._group_id, "error": str(exc)})
            return set()
        return {(tp.topic, tp.partition) for tp in result.topic_partitions
                if tp.error is not None and tp.error.code() == _UNSTABLE}


def admin_factory(client_config: dict[str, Any]) -> Callable[[], Any]:
    """An AdminClient per worker, made on first use (inside the executor thread)."""
    return lambda: AdminClient(dict(client_config))
