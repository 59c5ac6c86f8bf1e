"""An in-memory stand-in for confluent_kafka.Producer, for forwarder and collector unit tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeError:
    code: str
    is_fatal: bool = False

    def name(self) -> str:
        return self.code

    def fatal(self) -> bool:
        return self.is_fatal


@dataclass
class FakeProducer:
    """Acknowledges on poll; ``down`` holds everything back like an unreachable broker."""

    down: bool = False
    fail_next: list[FakeError] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)
    queue: list[tuple[bytes, Callable[[Any, Any], None]]] = field(default_factory=list)
    max_queue: int = 10_000
    most_queued: int = 0

    def produce(self, topic: str, value: bytes, key: bytes, *, on_delivery: Any) -> None:
        if len(self.queue) >= self.max_queue:
            raise BufferError("queue full")
        self.queue.append((value, on_delivery))
        self.most_queued = max(self.most_queued, len(self.queue))

    def poll(self, timeout: float) -> int:
        if self.down:
            time.sleep(min(timeout, 0.01))
            return 0
        served, self.queue = self.queue, []
        for value, callback in served:
            if self.fail_next:
                callback(self.fail_next.pop(0), None)
            else:
                self.delivered.append(value)
                callback(None, None)
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return len(self.queue)
