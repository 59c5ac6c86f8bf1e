"""Commit what the agents acked before Faust forgets it on a revocation.

faust-streaming 0.15.3's ``Consumer.on_partitions_revoked`` first drops its bookkeeping of the
revoked partitions (acked offsets, committed offsets) and only then runs the app's revocation
handler, which waits for the agents and commits. With eager rebalancing every assigned
partition is revoked, so the acks since the last timer commit are gone before that commit. The
outputs of those messages sit in the partition's open transaction all the same, and the
transaction is committed at the revocation whenever any other topic of the same partition group
(the widget agent's input shares the transactional producer) has an offset to commit: outputs
committed, their input offsets not. The next owner then reads the old offset and produces them
again. Measured with the two-worker test under CPU load: 40-320 events of one or two
partitions committed twice, each copy right after its original.

So before Faust's own handler runs, this does what that handler does (stop the flow, drop
buffered messages, wait until every delivered message is acked, commit and end the
transactions) while the acks are still known. Faust's handler then finds nothing left to commit.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

_WRAPPED_ATTR = "_agentwatch_commits_before_revocation"


def commit_before_revocation(app: Any) -> None:
    """Install on ``app`` before it starts; the consumer is patched at its first revocation.

    aiokafka always revokes (an empty set) before a member's first join, so the patch is in
    place before anything is assigned.
    """

    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        _wrap(app, app.consumer)

    app.on_partitions_revoked.connect(on_revoked)


def _wrap(app: Any, consumer: Any) -> None:
    if getattr(consumer, _WRAPPED_ATTR, False):
        return
    inner: Callable[[Any], Awaitable[None]] = consumer.on_partitions_revoked

    @functools.wraps(inner)
    async def on_partitions_revoked(revoked: Any) -> None:
        assignment = consumer.assignment()
        if assignment and not app.should_stop:
            consumer.stop_flow()
            app.flow_control.suspend()
            consumer.pause_partitions(assignment)
            app.flow_control.clear()
            try:
                # Waits for the messages agents hold to be acked, committing as they are, then
                # commits the rest and ends the transactions (through the commit gate).
                await consumer.wait_empty()
            except Exception:
                # Faust's own handler retries the same; what is not committed is processed again
                # by the next owner from the last commit, as after a crash.
                log.exception("commit before revocation failed")
        await inner(revoked)

    # Faust calls ``self.on_partitions_revoked`` through its method queue: an instance
    # attribute wins over the method.
    consumer.on_partitions_revoked = on_partitions_revoked
    setattr(consumer, _WRAPPED_ATTR, True)
