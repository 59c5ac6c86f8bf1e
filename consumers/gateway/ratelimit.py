"""Per-user token buckets: ``rate`` requests per second with bursts up to ``burst``.

Clock-injected and pure, so tests drive it with a fake clock. Buckets of users idle long enough
to have refilled are forgotten, so memory follows the active users only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._last_sweep = clock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """0.0 when allowed (the tokens are taken), else the seconds until it would be."""
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """Retry-After is whole seconds; round up so a client that obeys it is let in."""
        return str(max(1, math.ceil(wait_s)))

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        if now - self._last_sweep < max(1.0, full_after):
            return
        self._last_sweep = now
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < full_after}
