"""Request pipeline of the REST API: errors to JSON, bearer auth, per-user rate limit.

Public paths: the dashboard's static files, /health, /metrics and /api/openapi.json (the
dashboard shell and the API description hold no telemetry). Everything under /api/ needs a
bearer token; WebSocket handlers authenticate themselves (they also accept a short-lived token
in the query string).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from consumers.gateway.auth import AuthError, ForbiddenError, Principal, bearer_token
from consumers.gateway.context import GATEWAY, PRINCIPAL, Gateway, client_address
from consumers.gateway.ratelimit import RateLimiter
from pipeline.errors import QueryError, TransientError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_API = frozenset({"/api/openapi.json"})


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None
               ) -> web.Response:
    return web.Response(status=status, headers=headers, content_type="application/json",
                        text=json.dumps({"error": code, "message": message}))


def unauthorized(exc: AuthError) -> web.Response:
    return json_error(401, "unauthorized", str(exc),
                      {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'})


def too_many(wait_s: float) -> web.Response:
    return json_error(429, "rate_limited", "too many requests",
                      {"Retry-After": RateLimiter.retry_after_header(wait_s)})


async def authenticate(gw: Gateway, request: web.Request, *, allow_query: bool) -> Principal:
    """The request's principal (header first, then ?token= when allowed); raises AuthError."""
    token = bearer_token(request.headers.get("Authorization"))
    from_query = False
    if token is None and allow_query and request.query.get("token"):
        token, from_query = request.query["token"], True
    if token is None:
        raise AuthError("missing bearer token", "missing")
    return await gw.auth.verify(token, from_query=from_query)


async def guard(gw: Gateway, request: web.Request, *, allow_query: bool) -> Principal | web.Response:
    """Authenticate and rate-limit; a Response is the refusal to return."""
    try:
        principal = await authenticate(gw, request, allow_query=allow_query)
    except AuthError as exc:
        gw.metrics.auth_failures.labels(exc.reason).inc()
        # Failed attempts count against the address, so guessing tokens is rate limited too.
        wait = gw.limiter.take("addr:" + client_address(request))
        if wait > 0:
            gw.metrics.rate_limited.inc()
            return too_many(wait)
        return unauthorized(exc)
    wait = gw.limiter.take("user:" + principal.user)
    if wait > 0:
        gw.metrics.rate_limited.inc()
        return too_many(wait)
    return principal


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    is_api = request.path.startswith("/api/") and request.path not in PUBLIC_API
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    if is_api:
        outcome = await guard(gw, request, allow_query=False)
        if isinstance(outcome, web.Response):
            gw.metrics.requests.labels(route, str(outcome.status)).inc()
            return outcome
        request[PRINCIPAL] = outcome
    try:
        response = await handler(request)
    except ForbiddenError as exc:
        response = json_error(403, "forbidden", str(exc))
    except QueryError as exc:
        response = json_error(400, "bad_query", str(exc))
    except TransientError as exc:
        response = json_error(503, "unavailable", str(exc), {"Retry-After": "5"})
    except web.HTTPException as exc:
        if is_api and exc.status >= 400:
            response = json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
        else:
            raise
    if is_api:
        gw.metrics.requests.labels(route, str(response.status)).inc()
    return response
