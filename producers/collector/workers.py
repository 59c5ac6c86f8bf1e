"""OTLP decoding, mapping and Avro encoding in worker processes.

An OTLP batch holds up to thousands of records and turning each into an encoded event is pure
Python work: in the collector's own process it would share one core (the GIL) with the HTTP
server and the forwarder. ``OtlpWorkers`` runs it in ``collector.otlp_workers`` spawned processes
and hands back spool records (key, tag, Avro bytes); the collector process only appends them.
Workers are spawned, never forked: the parent runs librdkafka and aiohttp threads.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from producers.publisher import event_tag

if TYPE_CHECKING:
    from pipeline.serde import AvroSerde


@dataclass(frozen=True)
class Mapped:
    """What a worker returns: spool records, or why the body was refused."""

    records: list[tuple[bytes, bytes, bytes]]
    metric_points: dict[str, int]
    rejected: tuple[str, str] | None = None


@functools.lru_cache(maxsize=1)
def _serde() -> AvroSerde:
    """One serde per worker process, built on first use."""
    from pipeline.serde import AvroSerde

    return AvroSerde()


def map_and_encode(signal: str, body: bytes, content_type: str, received_us: int, *,
                   user: str | None = None, telemetry: str = "enabled") -> Mapped:
    """Runs in a worker: the same decode and mapping as in-process, plus the Avro encoding.

    ``user`` and ``telemetry`` (the collector's consent decision for it) are applied before
    encoding: the records are final once they leave the worker."""
    from pipeline import privacy
    from producers.collector import otlp

    serde = _serde()
    try:
        request = otlp.decode_request(signal, body, content_type)
    except otlp.OtlpDecodeError as exc:
        return Mapped([], {}, ("otlp_decode", str(exc)))
    events = otlp.MAPPERS[signal](request, received_us)
    points: dict[str, int] = {}
    if signal == "metrics":
        for event in events:
            name = event["metadata"].get("otel.metric", "")
            points[name] = points.get(name, 0) + 1
    mode = privacy.Telemetry(telemetry)
    if mode is not privacy.Telemetry.ENABLED:
        events = [e for e in events if privacy.allowed(str(e["event_type"]), mode)]
    privacy.stamp(events, user)
    records = [(str(e["session_id"]).encode(), event_tag(e), serde.encode_event(e))
               for e in events]
    return Mapped(records, points)


def _warm() -> bool:
    _serde()
    return True


class OtlpWorkers:
    """A small process pool (none with ``workers=0``); ``start`` spawns and warms the workers."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return self._workers > 0

    async def start(self) -> None:
        if not self.enabled:
            return
        self._pool = ProcessPoolExecutor(max_workers=self._workers,
                                         mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _warm)
                               for _ in range(self._workers)))

    async def map(self, signal: str, body: bytes, content_type: str, received_us: int, *,
                  user: str | None = None, telemetry: str = "enabled") -> Mapped:
        if self._pool is None:
            raise RuntimeError("OTLP workers are not started")
        loop = asyncio.get_running_loop()
        work = functools.partial(map_and_encode, signal, body, content_type, received_us,
                                 user=user, telemetry=telemetry)
        return await loop.run_in_executor(self._pool, work)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
