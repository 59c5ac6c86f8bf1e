"""Shorten how long the aggregates' Kafka fetches may wait on the broker (Faust fixes 1.5 s).

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change it.
The aggregates read the events topic ``read_committed``, and the broker parks such a fetch until
data below the last stable offset arrives *or* the wait runs out; a transaction's commit marker
did not end the wait here (Kafka 4.1, single broker), so an event committed just after a fetch
was parked reached the widgets up to 1.5 s later: bench/e2e_latency.py measured events ->
widgets p50 1.4 s once the first stage left Faust's consumer (before, that consumer's ingest
traffic kept its fetches returning). aiokafka's fetcher reads the value for every request, so
setting it once the consumer runs is enough.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def cap_fetch_wait(app: Any, wait_ms: int) -> None:
    """Install on ``app`` before it starts; applied at every assignment (the consumer exists)."""

    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        fetcher = getattr(getattr(getattr(app.consumer, "_thread", None), "_consumer", None),
                          "_fetcher", None)
        if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            log.warning("cannot cap the aggregates' fetch wait: aiokafka internals changed")
            return
        fetcher._fetch_max_wait_ms = wait_ms

    app.on_partitions_assigned.connect(on_assigned)
