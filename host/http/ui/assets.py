"""The dashboard's script and stylesheet, served from the package (no network, no CDN)."""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

from .session import UI_PATH

_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _TYPES:
        raise web.HTTPNotFound()
    return web.Response(body=_asset(name), content_type=_TYPES[name],
                        headers={"Cache-Control": "max-age=300",
                                 "X-Content-Type-Options": "nosniff"})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{UI_PATH}/static/{{name}}", asset)
