"""Send generated sessions to the collector over HTTP, at a rate, like many Claude Codes would.

Each of the ``lanes`` runs one session at a time, step by step (a session's hooks must arrive in
order: PreToolUse before its PostToolUse), so concurrency comes from running sessions side by
side. One shared pacer spreads all sends at ``rate`` per second. A payload the collector cannot
take now (connection refused, 5xx, 429/503 with Retry-After) is retried with backoff until
``give_up_s``: a collector restarting mid-run loses nothing, and the accounting of what was sent
stays exact. With ``duration_s`` the lanes keep starting new sessions until it has passed and
then finish the session they are in; without, each lane plays one session.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pipeline.errors import AgentwatchError, BackpressureError, TransientError
from pipeline.retry import RetryPolicy, retry_async
from producers.simulator.otlp import JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, to_protobuf
from producers.simulator.script import Accounting, SessionScript, Step

SessionFactory = Callable[[int], SessionScript]


class RejectedError(AgentwatchError):
    """The collector refused a payload for good (4xx other than 429): not retried."""


@dataclass(frozen=True)
class Target:
    hooks_url: str
    logs_url: str
    otlp_encoding: str = "protobuf"
    """``protobuf`` (http/protobuf exporters) or ``json`` (http/json)."""

    @classmethod
    def from_base(cls, base_url: str, otlp_encoding: str = "protobuf") -> Target:
        base = base_url.rstrip("/")
        return cls(f"{base}/hooks", f"{base}/v1/logs", otlp_encoding)


@dataclass
class DriveStats:
    sent: int = 0
    failed: int = 0
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None

        return {
            "sent": self.sent, "failed": self.failed, "retries": self.retries,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors), "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_s": round(self.sent / self.elapsed_s, 1) if self.elapsed_s else None,
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                           "max": round(lat[-1] * 1000, 2) if lat else None},
        }


class Pacer:
    """Spaces calls ``1/rate`` seconds apart across all lanes; no rate means no spacing."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def _request(step: Step, target: Target) -> tuple[str, bytes, str]:
    if step.channel == "hook":
        return target.hooks_url, json.dumps(step.body).encode(), JSON_CONTENT_TYPE
    body = stamp(step.body, time.time_ns())
    if target.otlp_encoding == "json":
        return target.logs_url, json.dumps(body).encode(), JSON_CONTENT_TYPE
    return target.logs_url, to_protobuf(body), PROTOBUF_CONTENT_TYPE


def stamp(logs: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """A copy of an OTLP logs body with its records timed ``now_ns`` (generation is timeless)."""
    out = copy.deepcopy(logs)
    for resource in out.get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for record in scope.get("logRecords", []):
                record["timeUnixNano"] = record["observedTimeUnixNano"] = str(now_ns)
                for attr in record.get("attributes", []):
                    if attr["key"] == "event.timestamp":
                        attr["value"] = {"stringValue": str(now_ns // 1_000_000)}
    return out


class Driver:
    def __init__(
        self, target: Target, *, rate: float | None = None, lanes: int = 1,
        give_up_s: float = 60.0, timeout_s: float = 10.0,
    ) -> None:
        self.target = target
        self.pacer = Pacer(rate)
        self.lanes = lanes
        self.policy = RetryPolicy(initial_s=0.1, max_s=2.0, max_attempts=None, deadline_s=give_up_s)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.stats = DriveStats()
        self.accounting = Accounting()

    async def _post_once(self, http: aiohttp.ClientSession, url: str, data: bytes,
                         ctype: str) -> None:
        started = time.perf_counter()
        try:
            async with http.post(url, data=data, headers={"Content-Type": ctype}) as resp:
                await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.errors[type(exc).__name__] += 1
            raise TransientError(f"{url}: {exc}") from exc
        self.stats.statuses[status] += 1
        if status < 300:
            self.stats.latencies_s.append(time.perf_counter() - started)
            return
        if status in (429, 503):
            try:
                wait = float(retry_after) if retry_after else 0.5
            except ValueError:
                wait = 0.5
            raise BackpressureError(f"{url} answered {status}", retry_after=wait)
        if status >= 500:
            raise TransientError(f"{url} answered {status}")
        raise RejectedError(f"{url} answered {status}")

    async def send(self, http: aiohttp.ClientSession, step: Step) -> bool:
        def on_retry(_exc: BaseException, _n: int, _wait: float) -> None:
            self.stats.retries += 1

        # Built once: a retry must resend the same bytes (the collector derives OTLP event ids
        # from them, so a resend after a lost response is counted once).
        url, data, ctype = _request(step, self.target)
        try:
            await retry_async(lambda: self._post_once(http, url, data, ctype), self.policy,
                              on_retry=on_retry)
        except AgentwatchError:
            self.stats.failed += 1
            return False
        self.stats.sent += 1
        return True

    async def _lane(self, http: aiohttp.ClientSession, lane: int, factory: SessionFactory,
                    until: float | None) -> None:
        index = lane
        loop = asyncio.get_running_loop()
        while True:
            script = factory(index)
            self.accounting.sessions_started += 1
            for step in script.steps:
                if step.pause_before_s:
                    await asyncio.sleep(step.pause_before_s)
                await self.pacer.wait()
                if await self.send(http, step):
                    self.accounting.add(script.session_id, step)
            self.accounting.complete(script.truth)
            index += self.lanes
            if until is None or loop.time() >= until:
                return

    async def run(self, factory: SessionFactory, duration_s: float | None = None) -> DriveStats:
        loop = asyncio.get_running_loop()
        started = loop.time()
        until = None if duration_s is None else started + duration_s
        connector = aiohttp.TCPConnector(limit=self.lanes)
        async with aiohttp.ClientSession(connector=connector, timeout=self.timeout) as http:
            await asyncio.gather(*(self._lane(http, i, factory, until) for i in range(self.lanes)))
        self.stats.elapsed_s = loop.time() - started
        return self.stats
