"""The dashboard's files (plain ES modules, a vendored charting library): no build step."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = STATIC_DIR / "index.html"


def index_response() -> web.FileResponse:
    # no-cache: the page is tiny and must pick up a new dashboard version at once; the
    # service worker keeps the offline copy.
    return web.FileResponse(INDEX, headers={"Cache-Control": "no-cache"})


async def index(_: web.Request) -> web.StreamResponse:
    return index_response()


async def service_worker(_: web.Request) -> web.FileResponse:
    # Served from the root, not /static/, so its scope covers the whole dashboard (/ and
    # /sessions/{id}); no-cache so browsers check for a new worker on every visit.
    return web.FileResponse(STATIC_DIR / "sw.js", headers={
        "Cache-Control": "no-cache", "Content-Type": "text/javascript; charset=utf-8"})


def add_static_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
