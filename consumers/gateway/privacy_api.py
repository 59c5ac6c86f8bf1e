"""The privacy endpoints: a user's own export, erasure and settings (admins: ``?user=`` anyone).

``GET /api/user/telemetry/export?format=json|csv`` streams every record about the user (see
``consumers.privacy.export``) with the manifest as the last record; ``DELETE
/api/user/telemetry`` erases the user's data everywhere and answers with the verification;
``GET|PUT /api/user/privacy`` reads and sets consent and retention. All are audited; the
erasure's audit row carries counts, never erased content.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from consumers.gateway.audit import AuditAction
from consumers.gateway.auth import ForbiddenError, Principal
from consumers.gateway.context import GATEWAY, Gateway, client_address
from consumers.gateway.middleware import principal_of
from pipeline.errors import QueryError, TransientError

log = logging.getLogger(__name__)
_CHUNKS_PER_HOP = 500


def _subject_user(request: web.Request, p: Principal) -> str:
    """The principal's own user; an admin may name another with ``?user=``."""
    user = request.query.get("user") or p.user
    if user != p.user and not p.is_admin:
        raise ForbiddenError("only admins act on another user's telemetry")
    return user


def _owned_sessions(gw: Gateway, user: str) -> list[str]:
    return [s.session_id for s in gw.store.sessions.values() if s.owner == user]


def _record(gw: Gateway, request: web.Request, p: Principal, action: AuditAction, *,
            access_type: str, resource: str, status: int = 200) -> None:
    gw.audit.record(action, access_type, user=p.user, role=p.role.value, resource=resource,
                    client_addr=client_address(request),
                    user_agent=request.headers.get("User-Agent", ""), status=status)


async def _flush_audit(gw: Gateway) -> None:
    # Privacy actions should be on record at once, not a flush interval later.
    with contextlib.suppress(Exception):
        await gw.audit.flush()


def _take(chunks: Iterator[bytes], n: int) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.append(chunk)
        if len(out) >= n:
            break
    return out


async def export_telemetry(request: web.Request) -> web.StreamResponse:
    from consumers.privacy.erase import Subject
    from consumers.privacy.export import stream
    from pipeline.migrations import client

    gw, p = request.app[GATEWAY], principal_of(request)
    user = _subject_user(request, p)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise QueryError("format is json or csv")
    ch = gw.settings.clickhouse
    conn = await asyncio.to_thread(client, ch, ch.database)
    try:
        chunks = stream(conn, ch.database, Subject(user=user), fmt,  # type: ignore[arg-type]
                        _owned_sessions(gw, user))
        first = await asyncio.to_thread(_take, chunks, _CHUNKS_PER_HOP)
        _record(gw, request, p, AuditAction.EXPORTED, access_type="user_export",
                resource=f"user:{user}")
        await _flush_audit(gw)
        ext, ctype = ("jsonl", "application/x-ndjson") if fmt == "json" else ("csv", "text/csv")
        response = web.StreamResponse(headers={
            "Content-Type": f"{ctype}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="agentwatch-export.{ext}"'})
        await response.prepare(request)
        batch = first
        while batch:
            await response.write(b"".join(batch))
            batch = await asyncio.to_thread(_take, chunks, _CHUNKS_PER_HOP)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(conn.disconnect)


async def delete_telemetry(request: web.Request) -> web.Response:
    from consumers.privacy.erase import Subject
    from consumers.privacy.service import archive_target, eraser
    from pipeline.migrations import client

    gw, p = request.app[GATEWAY], principal_of(request)
    user = _subject_user(request, p)
    known = _owned_sessions(gw, user)
    settings = gw.settings
    ch = settings.clickhouse

    def run() -> dict[str, Any]:
        conn = client(ch, ch.database)
        try:
            report = eraser(settings, conn, archive_target(settings)).erase(
                Subject(user=user), known)
        finally:
            conn.disconnect()
        out = report.summary()
        out["session_ids"] = report.sessions
        return out

    try:
        summary = await asyncio.to_thread(run)
    except Exception as exc:
        _record(gw, request, p, AuditAction.DELETED, access_type="user_erasure",
                resource=f"user:{user} failed: {type(exc).__name__}", status=500)
        await _flush_audit(gw)
        raise TransientError(f"erasure did not complete (run it again): {exc}") from exc
    for sid in summary.pop("session_ids"):
        gw.store.forget_session(sid)
        await gw.hub.session_erased(sid)
    resource = json.dumps(summary, separators=(",", ":"))
    _record(gw, request, p, AuditAction.DELETED, access_type="user_erasure", resource=resource,
            status=200 if summary["verified"] else 500)
    await _flush_audit(gw)
    return web.json_response(summary, status=200 if summary["verified"] else 500)


async def get_privacy(request: web.Request) -> web.Response:
    from pipeline.privacy import ConsentStore

    gw, p = request.app[GATEWAY], principal_of(request)
    user = _subject_user(request, p)
    pool = gw.pool
    if pool is None:
        raise TransientError("ClickHouse is not configured on this gateway")
    pref = await pool.run(lambda conn: ConsentStore(conn, pool.database).load_one(user))
    return web.json_response({
        "user_id": user, "telemetry": pref.telemetry.value if pref else "enabled",
        "retention_days": pref.retention_days if pref else 0,
        "updated_us": pref.updated_us if pref else None})


async def put_privacy(request: web.Request) -> web.Response:
    from pipeline.privacy import ConsentStore, Telemetry

    gw, p = request.app[GATEWAY], principal_of(request)
    user = _subject_user(request, p)
    try:
        body = await request.json()
    except ValueError as exc:
        raise QueryError("the body must be a JSON object") from exc
    if not isinstance(body, dict) or not set(body) <= {"telemetry", "telemetry_enabled",
                                                        "retention_days"}:
        raise QueryError("body: {\"telemetry\": \"enabled|disabled|minimal\", "
                         "\"retention_days\": N} (or \"telemetry_enabled\": true|false)")
    telemetry: Telemetry | None = None
    if "telemetry" in body:
        try:
            telemetry = Telemetry(body["telemetry"])
        except ValueError as exc:
            raise QueryError("telemetry is enabled, disabled or minimal") from exc
    elif isinstance(body.get("telemetry_enabled"), bool):
        telemetry = Telemetry.ENABLED if body["telemetry_enabled"] else Telemetry.DISABLED
    days = body.get("retention_days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 0):
        raise QueryError("retention_days is a whole number of days >= 0")
    pool = gw.pool
    if pool is None:
        raise TransientError("ClickHouse is not configured on this gateway")
    pref = await pool.run(lambda conn: ConsentStore(conn, pool.database).set(
        user, telemetry=telemetry, retention_days=days, by=p.user))
    _record(gw, request, p, AuditAction.PRIVACY_UPDATED, access_type="privacy_settings",
            resource=f"user:{user} telemetry={pref.telemetry.value} "
                     f"retention_days={pref.retention_days}")
    await _flush_audit(gw)
    return web.json_response({"user_id": user, "telemetry": pref.telemetry.value,
                              "retention_days": pref.retention_days,
                              "updated_us": pref.updated_us})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/user/telemetry/export", export_telemetry)
    router.add_delete("/api/user/telemetry", delete_telemetry)
    router.add_get("/api/user/privacy", get_privacy)
    router.add_put("/api/user/privacy", put_privacy)
