"""Keep events from reaching the agents while Faust repositions the consumer after a rebalance.

Faust (faust-streaming 0.15.3) ends table recovery with: resume the stream partitions, seek them
to their committed offsets, then resume the flow control, which *clears* every agent's buffer.
Its fetcher is running again since recovery resumed the flow to read the changelogs, so records
fetched between the resume of the partitions and that clear reach an agent's buffer and are
thrown away; their offsets count as read, so the fetcher does not deliver them again, and the
commit moves past them. Measured with the SIGKILL-restart test
(tests/integration/processors/test_aggregates_restart.py, about 1 run in 4 under CPU load) by
logging every fetched, buffered and folded offset: the first events after the restart were
buffered and never folded, so a session summary stayed one event short.

The fix stops the flow for the duration of every seek to the committed offsets: nothing is fetched
or buffered until the caller (always recovery) resumes the flow, and what the fetcher had in hand
is fetched again from the new position. The flow is also stopped on every revocation, including
the empty one before a worker's first join, which Faust skips.

A seek to committed offsets does nothing for a partition without one (aiokafka only seeks to
offsets above 0), so records of such a partition that were fetched and then cleared were lost
for good: the fetcher went on after them. That is the first messages of a partition, at
start-up, before anything is committed (the scale-out test lost offsets 0-2 of one ingest
partition in about 1 run in 4). Those partitions are sent back to their earliest offset after
the seek, which is where the reset policy (earliest) would start them; what this process had
already folded from them is skipped by the replay guard (``processors/idempotence.py``).

The same hook first waits for the group's committed offsets to be stable (see
processors/stable_offsets.py): the seek must not land on an offset whose transaction is still
being applied.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from processors.stable_offsets import StableOffsets

_WRAPPED_ATTR = "_agentwatch_seek_holds_flow"


def hold_flow_around_seeks(app: Any, stable: StableOffsets | None = None) -> None:
    """Install on ``app`` (before it starts); the consumer is patched when it first rebalances.

    With ``stable``, every seek first waits for the assigned partitions' committed offsets to
    settle (exactly-once workers; at-least-once commits are never pending).
    """

    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        consumer = app.consumer
        _wrap_perform_seek(app, consumer, stable)
        consumer.stop_flow()
        app.flow_control.suspend()

    app.on_partitions_revoked.connect(on_revoked)


def _wrap_perform_seek(app: Any, consumer: Any, stable: StableOffsets | None) -> None:
    if getattr(consumer, _WRAPPED_ATTR, False):
        return
    inner: Callable[[], Awaitable[None]] = consumer.perform_seek

    @functools.wraps(inner)
    async def perform_seek() -> None:
        # Every caller resumes both right after the seek (tables/recovery.py, and the fetcher's
        # own "flow not active" path, which runs with the flow already stopped).
        consumer.stop_flow()
        app.flow_control.suspend()
        if stable is not None:
            await stable.wait({(tp.topic, tp.partition) for tp in consumer.assignment()})
        await inner()
        await _rewind_uncommitted(app, consumer)

    # Faust calls ``consumer.perform_seek()``: an instance attribute wins over the method.
    consumer.perform_seek = perform_seek
    setattr(consumer, _WRAPPED_ATTR, True)


async def _rewind_uncommitted(app: Any, consumer: Any) -> None:
    changelogs = set(app.tables.changelog_topics)
    # Faust's own record of the committed offsets, just refreshed by the seek (None: none).
    committed = consumer._committed_offset
    tps = [tp for tp in consumer.assignment()
           if tp.topic not in changelogs and committed.get(tp) is None]
    if not tps:
        return
    earliest = await consumer.earliest_offsets(*tps)
    await consumer.seek_wait({tp: offset for tp, offset in earliest.items() if offset is not None})
