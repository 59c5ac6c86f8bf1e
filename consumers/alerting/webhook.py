"""Generic webhook channel: one JSON POST per alert (the alert record, or a Slack payload).

Retried with backoff on connection errors, timeouts, 408, 429 and 5xx (``Retry-After`` honoured);
any other status is the receiver saying no, so the alert is dead-lettered at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from consumers.alerting.channels import Alert, slack_payload
from pipeline.errors import BackpressureError, DeliveryError, TransientError
from pipeline.retry import RetryPolicy, retry_async

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: our own backoff is good enough


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, *, slack: bool = False, timeout_s: float = 5.0,
                 policy: RetryPolicy | None = None, stop: asyncio.Event | None = None) -> None:
        self.url = url
        self.slack = slack
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._policy = policy or RetryPolicy(initial_s=0.5, max_s=30.0, max_attempts=5)
        self._stop = stop
        self._session: aiohttp.ClientSession | None = None
        self.attempts = 0
        """POSTs made (all alerts); for metrics and tests."""

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert) if self.slack else {"kind": "agentwatch.alert", **alert}

    async def deliver(self, alert: Alert) -> None:
        body = self.payload(alert)
        try:
            await retry_async(lambda: self._post(body), self._policy, stop=self._stop)
        except TransientError as exc:
            if self._stop is not None and self._stop.is_set():
                raise  # shutting down: leave the alert uncommitted for the next start
            raise DeliveryError(f"webhook {self.url}: {exc}") from exc
        except DeliveryError as exc:
            raise DeliveryError(f"webhook {self.url}: {exc}") from exc

    async def _post(self, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        self.attempts += 1
        try:
            async with self._session.post(self.url, json=body) as resp:
                if resp.status < 300:
                    return
                text = (await resp.text())[:200]
                if resp.status in RETRY_STATUSES:
                    wait = _retry_after(resp.headers.get("Retry-After"))
                    if wait is not None:
                        raise BackpressureError(f"HTTP {resp.status}: {text}", retry_after=wait)
                    raise TransientError(f"HTTP {resp.status}: {text}")
                raise DeliveryError(f"HTTP {resp.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
