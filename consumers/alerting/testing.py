"""In-memory channel double for unit tests of the dispatcher and the consumer."""

from __future__ import annotations

from consumers.alerting.channels import Alert
from pipeline.errors import DeliveryError


class MemoryChannel:
    """Records delivered alerts; ``fail_ids`` are refused with a DeliveryError."""

    def __init__(self, name: str = "memory", fail_ids: set[str] | None = None) -> None:
        self.name = name
        self.delivered: list[Alert] = []
        self.fail_ids = set(fail_ids or ())
        self.closed = False

    async def deliver(self, alert: Alert) -> None:
        if alert["alert_id"] in self.fail_ids:
            raise DeliveryError(f"{self.name} refuses {alert['alert_id']}")
        self.delivered.append(alert)

    async def close(self) -> None:
        self.closed = True
