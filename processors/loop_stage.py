"""A librdkafka loop inside the Faust worker, on a thread of its own: the worker's stages.

A ``mode.Service`` so it starts and stops with the worker (SIGTERM included) next to the Faust
app's agents; the loops (processors/ingest_loop.py, processors/aggregates_loop.py) block in
librdkafka calls, which must never run on the event loop. A loop that fails crashes the whole
worker (exit 1): a restarted process resumes from the last committed transaction, nothing is
half-done.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from mode import Service

from pipeline.settings import Settings
from processors.kafka_calls import LoopSnapshot

log = logging.getLogger(__name__)

_STOP_WAIT_S = 25.0
"""Longest on_stop waits for the loop's thread (the worker exits hard after 30 s anyway)."""


class Loop(Protocol):
    def run(self, stop: threading.Event) -> None: ...

    def snapshot(self) -> LoopSnapshot: ...


def transactional_id(settings: Settings, stage: str) -> str:
    """Stable across restarts of the same worker, so a restart fences its own zombie at once
    instead of waiting out ``transaction_timeout_s``; unique per worker on a host (its port)
    and per stage."""
    instance = settings.worker.instance_id or f"{socket.gethostname()}-{settings.worker_http.port}"
    return f"{settings.worker.app_id}-{stage}-{instance}"


def group_consumer_config(settings: Settings, group: str, fetch_wait_ms: int) -> dict[str, Any]:
    """The consumer of a stage's input: manual commits (in the stage's transactions), eager
    assignment (a revoke takes the whole assignment, between two consume calls, on the loop's
    thread), and read_committed, which also makes the offset fetch on assignment wait for a
    previous owner's pending transactional offsets (require_stable, KIP-447)."""
    conf = settings.worker
    return {
        **settings.kafka.client_config(),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range,roundrobin",
        "session.timeout.ms": int(conf.session_timeout_s * 1000),
        "heartbeat.interval.ms": int(conf.heartbeat_interval_s * 1000),
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": fetch_wait_ms,
        "queued.max.messages.kbytes": 65_536,
    }


class LoopStage(Service):
    """Starts the loop's thread with the worker and joins it on stop."""

    def __init__(self, name: str, factory: Callable[[], Loop],
                 on_crash: Callable[[BaseException], Coroutine[Any, Any, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = name
        self._factory = factory
        self._stage_loop: Loop | None = None
        self._on_crash = on_crash
        self._stop_flag = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def snapshot(self) -> LoopSnapshot:
        loop = self._stage_loop
        return LoopSnapshot(False, (), None) if loop is None else loop.snapshot()

    async def on_start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"agentwatch-{self.stage}",
                                        daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self._stop_flag.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, _STOP_WAIT_S)

    def _run(self) -> None:
        try:
            # Built here, not with the worker: the clients connect at once, and a pool takes a
            # second or two to spawn, which must not block the event loop.
            self._stage_loop = self._factory()
            self._stage_loop.run(self._stop_flag)
        except BaseException as exc:  # the worker must go down with it, whatever it was
            log.exception("a worker stage failed; stopping the worker", extra={"stage": self.stage})
            if self._event_loop is not None and not self._stop_flag.is_set():
                asyncio.run_coroutine_threadsafe(self._on_crash(exc), self._event_loop)
