"""What the worker's librdkafka loops share: how a failed Kafka call is judged, and how it is retried.

Both stages (processors/ingest_loop.py, processors/aggregates_loop.py) are consume-transform-
produce loops on a thread of their own; a Kafka error there means one of four things, and each
loop must react the same way to each: retry the same call (broker away), abort the transaction
and process the input again, or stop the worker (fenced, fatal).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.5
"""Pause between two attempts of a call that failed with a retriable error (broker away)."""


class StageFailedError(RuntimeError):
    """The loop cannot go on in this process (fenced, fatal client error)."""


class AbortError(Exception):
    """The open transaction must be aborted (and its input processed again)."""


class RetryError(Exception):
    """The call may simply be made again."""


def classify(exc: KafkaException, what: str) -> Exception:
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is None:
        return StageFailedError(f"{what}: {exc}")
    text = f"{what}: {err.str()}"
    if err.fatal():
        return StageFailedError(text)
    if err.txn_requires_abort():
        return AbortError(text)
    if err.retriable():
        return RetryError(text)
    # Neither fatal nor abortable nor retriable (a produce of an oversized record, a state
    # error): abort and process the input again would repeat it forever.
    return StageFailedError(text)


def fatal_only(exc: KafkaException, what: str) -> StageFailedError | None:
    """For calls outside a transaction that the loop must get through whatever it takes
    (fetching committed offsets, seeking, reading changelogs): only a fatal error stops the
    loop; anything else is waited out. ``committed()`` times out with a plain, non-retriable
    ``_TIMED_OUT`` while the broker is away, which ``classify`` would judge fatal to the loop:
    a 60 s broker outage in CI crashed the worker that way (2026-11-27)."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is not None and err.fatal():
        return StageFailedError(f"{what}: {err.str()}")
    return None


@dataclass(frozen=True)
class LoopSnapshot:
    """What a loop's health reports; safe to take from another thread."""

    running: bool
    assigned: tuple[tuple[str, int], ...]
    failure: str | None
    blocked_s: float = 0.0
    """How long the current blocking call has been running (0 when none is)."""
    stalled: bool = False


class BlockingCalls:
    """Runs a loop's blocking Kafka calls, retrying the retriable ones while the loop runs, and
    remembers when the current one started: librdkafka has calls that can hang past their own
    timeout, and the loop's health must be able to say so."""

    def __init__(self, pause_s: float = RETRY_PAUSE_S) -> None:
        self._pause_s = pause_s
        self._started: float | None = None

    def blocked_s(self) -> float:
        started = self._started
        return 0.0 if started is None else time.monotonic() - started

    def run(self, stop: threading.Event, what: str, call: Callable[[], None]) -> None:
        """Run ``call``; retry while it fails retriably. Raises ``AbortError`` when the loop
        stops meanwhile, and whatever ``classify`` makes of any other failure."""
        while True:
            self._started = time.monotonic()
            try:
                call()
                return
            except KafkaException as exc:
                failure = classify(exc, what)
                if not isinstance(failure, RetryError):
                    raise failure from exc
                if stop.is_set():
                    raise AbortError(f"{what}: stopping while {exc.args[0].str()}") from exc
                log.warning("retrying", extra={"call": what, "error": exc.args[0].str()})
                time.sleep(self._pause_s)
            finally:
                self._started = None
