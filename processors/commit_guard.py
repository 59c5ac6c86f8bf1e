"""Keep Faust's transactional offset commits of the aggregates agent from crashing the worker.

Under ``exactly_once`` Faust commits the aggregates agent's input offsets through one
transactional producer per assigned events partition (``send_offsets_to_transaction``). Two of
its commit paths fail on a producer that is not in a transaction, and both end the worker:

* a timer commit that comes between the commit that *ended* the transactions (revocation,
  shutdown: ``start_new_transaction=False``) and Faust's next begin, more likely the shorter
  ``worker.commit_interval_ms`` is (``IllegalOperation: Not in the middle of a transaction``,
  seen at shutdown in bench/worker.py with 100 ms): such a commit begins them again first;
* the shutdown commit itself, after rebalances with changelog tables: skipped with a warning,
  which only means those offsets are folded again (the replay guard skips them) next time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import IllegalOperation  # type: ignore[import-untyped]
from aiokafka.producer.transaction_manager import (  # type: ignore[import-untyped]
    TransactionState,
)

_GUARD_ATTR = "_agentwatch_commit_guard"

log = logging.getLogger(__name__)


def guard_commits(consumer: Any) -> None:
    """Route every ``consumer.commit()`` through the guard; idempotent."""
    if getattr(consumer, _GUARD_ATTR, False):
        return
    inner: Callable[..., Awaitable[bool]] = consumer.commit

    @functools.wraps(inner)
    async def commit(*args: Any, **kwargs: Any) -> bool:
        if kwargs.get("start_new_transaction", True):
            await _reopen_transactions(consumer)
            return await inner(*args, **kwargs)
        # The shutdown commit: a producer that lost its transaction must not keep the consumer
        # from closing (Faust would leave its thread running and the process would never exit).
        try:
            return await inner(*args, **kwargs)
        except IllegalOperation as exc:
            log.warning("shutdown commit skipped: %s", exc)
            return False

    # Faust's timer, rebalance and shutdown paths all call ``self.commit``: an instance
    # attribute wins over the method for each of them.
    consumer.commit = commit
    setattr(consumer, _GUARD_ATTR, True)


async def _reopen_transactions(consumer: Any) -> None:
    """Begin a transaction on every transactional producer that ended its own; a producer in
    any other state is left to the commit, which reports it as before."""
    producer = getattr(getattr(consumer, "app", None), "producer", None)
    producers = getattr(producer, "_transaction_producers", None)
    if not producers:
        return
    locks = getattr(producer, "_trn_locks", {})
    for tid, txn_producer in list(producers.items()):
        manager = getattr(txn_producer, "_txn_manager", None)
        if manager is None or manager.state is not TransactionState.READY:
            continue
        async with locks.get(tid) or contextlib.nullcontext():
            if manager.state is TransactionState.READY:
                await txn_producer.begin_transaction()
