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


def add_static_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
