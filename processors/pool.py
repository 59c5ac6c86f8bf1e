"""The first stage's per-message work spread over several processes (``worker.processes > 1``).

Validation, redaction and the Avro round trip are pure Python and hold the GIL: one process
tops out at one core however many partitions it owns. A pool of processes, each with its own
``EventProcessor`` built from the same settings, takes a batch in contiguous chunks and returns
the outcomes in order, so the loop (processors/ingest_loop.py) still produces and commits one
batch in one transaction, and ordering per partition is kept. The pool's processes are
``spawn``ed, not forked: the worker has librdkafka and Faust threads that a fork would copy
mid-flight.

Small batches (an idle pipeline's few events) are processed in the loop's own thread: a round
trip through the pool costs more than the work, and latency matters most then.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from pipeline.gc_tuning import tune_gc
from processors.deadletters import SourceMeta
from processors.validate import EventProcessor, Outcome, build_processor

INLINE_BELOW = 64
"""Batches smaller than this are processed in the calling thread."""

Item = tuple[bytes, SourceMeta]

_processor: EventProcessor | None = None
"""The pool process's own processor, set once by its initializer (one per process, never
shared: this module's state in the worker's main process stays None)."""


def _init(settings: Any) -> None:
    global _processor  # noqa: PLW0603 - per pool process; an initializer is all the pool offers
    _processor = build_processor(settings)
    tune_gc()  # as the worker's own process: a chunk keeps thousands of decoded events alive


Packed = tuple[bytes, str, int, int, bytes | None]
"""An item as it crosses to a pool process: plain tuples pickle in a fifth of a dataclass's time,
which is paid in the loop's thread for every message."""


def _pack(items: Sequence[Item]) -> list[Packed]:
    return [(raw, meta.topic, meta.partition, meta.offset, meta.key) for raw, meta in items]


def _process_chunk(items: Sequence[Packed]) -> list[Outcome]:
    processor = _processor
    assert processor is not None, "pool process without its initializer"
    return [processor.process(raw, SourceMeta(topic, partition, offset, key))
            for raw, topic, partition, offset, key in items]


class ProcessingPool:
    """``processes`` processes doing ``EventProcessor.process`` for the loop's thread."""

    def __init__(self, settings: Any, processes: int, inline: EventProcessor) -> None:
        self._processes = processes
        self._inline = inline
        self._executor = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init, initargs=(settings,),
        )
        # Start every process now (imports, compiled rules), not on the first busy batch.
        for future in [self._executor.submit(_process_chunk, ()) for _ in range(processes)]:
            future.result()

    def submit(self, items: Sequence[Item]) -> Callable[[], list[Outcome]]:
        """Start on ``items``; the returned call waits for their outcomes, in order.

        The loop commits the previous batch while the pool works on this one
        (processors/ingest_loop.py); a small batch is processed inline, when collected.
        """
        if len(items) < INLINE_BELOW:
            inline = self._inline
            return lambda: [inline.process(raw, meta) for raw, meta in items]
        size = -(-len(items) // self._processes)
        packed = _pack(items)
        futures = [self._executor.submit(_process_chunk, packed[i:i + size])
                   for i in range(0, len(packed), size)]
        return lambda: [outcome for future in futures for outcome in future.result()]

    def process(self, items: Sequence[Item]) -> list[Outcome]:
        return self.submit(items)()

    def pids(self) -> set[int]:
        """The pool's process ids (for tests and diagnostics); all started in ``__init__``."""
        processes = getattr(self._executor, "_processes", None) or {}
        return set(processes)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
