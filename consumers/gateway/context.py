"""What every gateway handler reaches through ``request.app[GATEWAY]``: one typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from consumers.gateway.audit import AuditAction, AuditLog
from consumers.gateway.auth import Authenticator, Principal
from consumers.gateway.chpool import ClickHousePool
from consumers.gateway.feed import WidgetFeed
from consumers.gateway.hub import Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.ratelimit import RateLimiter
from consumers.gateway.state import WidgetStore
from pipeline.settings import Settings

if TYPE_CHECKING:
    from consumers.gateway.replays import ReplayManager


@dataclass
class Gateway:
    settings: Settings
    auth: Authenticator
    store: WidgetStore
    hub: Hub
    metrics: GatewayMetrics
    limiter: RateLimiter
    audit: AuditLog
    feed: WidgetFeed | None = None
    pool: ClickHousePool | None = None
    replays: ReplayManager | None = None
    tasks: list[object] = field(default_factory=list)

    def audit_request(self, request: web.Request, principal: Principal, access_type: str,
                      session_id: str = "", *, action: AuditAction = AuditAction.ACCESSED,
                      status: int = 200) -> None:
        self.audit.record(
            action, access_type, user=principal.user, role=principal.role.value,
            session_id=session_id, resource=request.path_qs, client_addr=client_address(request),
            user_agent=request.headers.get("User-Agent", ""), status=status)


def client_address(request: web.Request) -> str:
    return request.remote or ""


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
