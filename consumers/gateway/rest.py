"""REST handlers: parse, check the principal may see it, call one function, shape the answer.

Sessions come from the in-memory widget state; events, search, named queries and the audit log
from ClickHouse (through the pool's threads); replays from the archive. Every read of a session's
telemetry is audited.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from consumers.clickhouse import queries, search
from consumers.clickhouse.output import ResultSet, to_jsonable
from consumers.gateway.audit import AuditAction
from consumers.gateway.auth import ForbiddenError, Principal, Role
from consumers.gateway.context import GATEWAY, Gateway
from consumers.gateway.middleware import principal_of
from consumers.gateway.replays import Replay
from consumers.gateway.state import WIDGETS, SessionState
from pipeline.errors import QueryError, TransientError

MAX_PAGE = 1000
MAX_SEARCH_SESSIONS = 90
"""A viewer's search is narrowed to their sessions inside the search language (100-term cap)."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps(data, separators=(",", ":"), default=to_jsonable))


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise QueryError(f"{name} must be an integer") from exc
    if not low <= value <= high:
        raise QueryError(f"{name} must be between {low} and {high}")
    return value


def _visible_session(gw: Gateway, principal: Principal, session_id: str) -> SessionState | None:
    """The session if the principal may see it; raises ForbiddenError otherwise.

    Unknown sessions are visible to admins only (they may exist in ClickHouse alone)."""
    session = gw.store.get(session_id)
    if not principal.may_see(session.owner if session is not None else None):
        raise ForbiddenError("not allowed to see this session")
    return session


def _pool(gw: Gateway) -> Any:
    if gw.pool is None:
        raise TransientError("ClickHouse is not configured on this gateway")
    return gw.pool


async def me(request: web.Request) -> web.Response:
    p = principal_of(request)
    return _json({"user": p.user, "role": p.role.value})


async def ws_token(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    ttl = gw.settings.gateway.ws_token_ttl_s
    token = gw.auth.mint(p.user, p.role, ttl, token_type="ws")
    return _json({"token": token, "expires_in": ttl})


async def list_sessions(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    limit = _int(request, "limit", 500, 1, 10_000)
    status = request.query.get("status")
    rows = [s.overview() for s in gw.store.visible(p.may_see)]
    if status:
        rows = [r for r in rows if r["status"] == status]
    rows.sort(key=lambda r: r.get("last_event_at") or 0, reverse=True)
    gw.audit_request(request, p, "rest_list")
    return _json({"sessions": rows[:limit], "total": len(rows)})


async def session_detail(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    sid = request.match_info["session_id"]
    session = _visible_session(gw, p, sid)
    if session is None:
        raise web.HTTPNotFound(text=f"no live state for session {sid}")
    gw.audit_request(request, p, "rest_read", sid)
    widgets = {name: {"data": w.data, "seq": w.seq, "timestamp": w.timestamp}
               for name in WIDGETS if (w := session.widgets.get(name)) is not None}
    return _json({"session": session.overview(), "widgets": widgets})


_EVENT_COLUMNS = (
    "ts_us", "event_id", "event_type", "agent", "severity", "source", "task_id", "tool_use_id",
    "payload_type", "file_path", "command_binary", "exit_code", "duration_ms", "test_suite",
    "test_name", "test_outcome", "build_component", "build_outcome", "model", "cost_usd",
    "error_type", "error_message", "metadata")


def events_sql(*, severity: bool, cursor: bool) -> str:
    """One page, newest first, keyset-paged on (ts_us, event_id); duplicates folded at read."""
    where = ["session_id = %(session)s"]
    if severity:
        where.append("severity IN %(severity)s")
    if cursor:
        # 18.16 has no tuple comparison in WHERE that uses the key; spelled out.
        where.append("(ts_us < %(c_ts)s OR (ts_us = %(c_ts)s AND event_id < %(c_id)s))")
    return (f"SELECT {', '.join(_EVENT_COLUMNS)} FROM telemetry_events WHERE {' AND '.join(where)} "
            "ORDER BY ts_us DESC, event_id DESC LIMIT 1 BY event_id LIMIT %(limit)s")


async def session_events(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    sid = request.match_info["session_id"]
    _visible_session(gw, p, sid)
    limit = _int(request, "limit", 100, 1, MAX_PAGE)
    params: dict[str, Any] = {"session": sid, "limit": limit}
    severities = [s for s in request.query.get("severity", "").split(",") if s]
    if severities:
        params["severity"] = tuple(severities)
    cursor = request.query.get("cursor")
    if cursor:
        ts, _, event_id = cursor.partition(":")
        if not ts.isdigit() or not event_id:
            raise QueryError("cursor is the next_cursor of the previous page")
        params.update(c_ts=int(ts), c_id=event_id)
    sql = events_sql(severity=bool(severities), cursor=bool(cursor))
    result = await _pool(gw).run(lambda conn: queries.execute(conn, sql, params, label="events",
                                                              max_seconds=30))
    rows = result.as_dicts()
    for row in rows:
        with contextlib.suppress(ValueError):
            row["metadata"] = json.loads(row["metadata"] or "{}")
    next_cursor = f"{rows[-1]['ts_us']}:{rows[-1]['event_id']}" if len(rows) == limit else None
    gw.audit_request(request, p, "rest_events", sid)
    return _json({"session_id": sid, "events": rows, "next_cursor": next_cursor})


def viewer_search(text: str, session_ids: list[str]) -> str:
    """The search narrowed to the viewer's sessions, in the search language itself."""
    ids = " OR ".join('session_id:"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
                      for s in session_ids)
    return f"({text}) AND ({ids})"


async def search_events(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    text = request.query.get("q", "").strip()
    if not text:
        raise QueryError("q is a search such as event_type:file.write AND severity:>=warning")
    limit = _int(request, "limit", 100, 1, MAX_PAGE)
    since_s, until_s = queries.window(request.query.get("since") or "24h",
                                      request.query.get("until") or "now")
    if not p.is_admin:
        mine = sorted(gw.store.visible(p.may_see),
                      key=lambda s: s.overview().get("last_event_at") or 0, reverse=True)
        if not mine:
            return _json({"query": text, "events": [], "sessions_searched": 0})
        text = viewer_search(text, [s.session_id for s in mine[:MAX_SEARCH_SESSIONS]])
    compiled = search.compile_search(text, since_s=since_s, until_s=until_s, limit=limit)
    result = await _pool(gw).run(
        lambda conn: queries.execute(conn, compiled.sql, compiled.params, label="search",
                                     max_seconds=30))
    gw.audit_request(request, p, "search")
    return _json({"query": request.query.get("q"), "events": result.as_dicts()})


async def list_queries(request: web.Request) -> web.Response:
    out = [{"name": q.name, "title": q.title, "description": q.description,
            "params": [{"name": x.name, "type": x.type, "default": x.default, "help": x.help}
                       for x in q.params]}
           for q in queries.REGISTRY.values()]
    return _json({"queries": out})


async def run_query(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    query = queries.get(request.match_info["name"])
    given = dict(request.query)
    session = given.get("session", "")
    if not p.is_admin:
        # A viewer runs analytics over one session they own, never across other users' data.
        if "session" not in {x.name for x in query.params} or not session:
            raise ForbiddenError("viewers run named queries for one of their sessions (session=...)")
        _visible_session(gw, p, session)
    params = queries.bind(query, given)
    result: ResultSet = await _pool(gw).run(lambda conn: queries.run(conn, query, params,
                                                                     max_seconds=60))
    gw.audit_request(request, p, f"query:{query.name}", session)
    return _json({"query": query.name, "columns": list(result.columns),
                  "rows": [[to_jsonable(v) for v in row] for row in result.rows]})


async def audit_log(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    if p.role is not Role.ADMIN:
        raise ForbiddenError("the audit log is for admins")
    limit = _int(request, "limit", 100, 1, MAX_PAGE)
    where: list[str] = ["1"]
    params: dict[str, Any] = {"limit": limit}
    for key, column in (("user", "user_id"), ("session", "session_id"), ("action", "action")):
        if request.query.get(key):
            where.append(f"{column} = %({key})s")
            params[key] = request.query[key]
    sql = (f"SELECT at_us, action, access_type, user_id, role, session_id, resource, client_addr, "
           f"user_agent, status, gateway FROM audit_log WHERE {' AND '.join(where)} "
           "ORDER BY at_us DESC LIMIT %(limit)s")
    result = await _pool(gw).run(lambda conn: queries.execute(conn, sql, params, label="audit"))
    return _json({"entries": result.as_dicts()})


async def export_session(request: web.Request) -> web.StreamResponse:
    gw, p = request.app[GATEWAY], principal_of(request)
    sid = request.match_info["session_id"]
    _visible_session(gw, p, sid)
    if gw.replays is None:
        raise TransientError("the archive is not configured on this gateway")
    import asyncio

    events, source = await asyncio.to_thread(gw.replays.loader, sid)
    gw.audit_request(request, p, "export", sid, action=AuditAction.EXPORTED)
    from consumers.archive.jsonl import event_to_line

    body = b"".join(event_to_line(e) for e in events)
    return web.Response(body=body, content_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{sid}.jsonl"', "X-Agentwatch-Source": source})


def _replay_of(request: web.Request) -> Replay:
    gw, p = request.app[GATEWAY], principal_of(request)
    if gw.replays is None:
        raise TransientError("replays are not configured on this gateway")
    rep = gw.replays.get(request.match_info["replay_id"])
    if rep is None or not (p.is_admin or rep.user == p.user):
        raise web.HTTPNotFound(text="no such replay")
    return rep


async def start_replay(request: web.Request) -> web.Response:
    gw, p = request.app[GATEWAY], principal_of(request)
    sid = request.match_info["session_id"]
    _visible_session(gw, p, sid)
    if gw.replays is None:
        raise TransientError("replays are not configured on this gateway")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError as exc:
        raise QueryError("the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise QueryError("the body must be a JSON object")
    rep = gw.replays.start(sid, p.user, body)
    gw.audit_request(request, p, "replay", sid)
    return _json(rep.describe(), status=201)


async def replay_status(request: web.Request) -> web.Response:
    rep = _replay_of(request)
    # With the replay view's widgets so far: what a client that (re)connects mid-replay lacks.
    return _json({**rep.describe(), "widgets": rep.widgets})


async def pause_replay(request: web.Request) -> web.Response:
    rep = _replay_of(request)
    manager = request.app[GATEWAY].replays
    assert manager is not None
    manager.pause(rep)
    return _json(rep.describe())


async def resume_replay(request: web.Request) -> web.Response:
    rep = _replay_of(request)
    manager = request.app[GATEWAY].replays
    assert manager is not None
    manager.resume(rep)
    return _json(rep.describe())


async def stop_replay(request: web.Request) -> web.Response:
    rep = _replay_of(request)
    manager = request.app[GATEWAY].replays
    assert manager is not None
    await manager.stop(rep)
    return _json(rep.describe())


async def openapi(_: web.Request) -> web.FileResponse:
    from consumers.gateway.static import STATIC_DIR

    return web.FileResponse(STATIC_DIR.parent / "openapi.json",
                            headers={"Content-Type": "application/json"})

