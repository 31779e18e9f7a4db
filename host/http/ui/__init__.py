"""The dashboard at /ui (served by `dwf serve`): tenants, instances, one instance's timeline,
module versions, cron schedules, and the control actions, for people with an API token.

Server-rendered HTML (Jinja2, templates/) with one small script (static/app.js) that
refreshes a running instance's page by polling. Everything it uses is in this package:
no CDN, no web font, nothing fetched at run time.
"""

from __future__ import annotations

from aiohttp import web

from . import assets, pages, schedules


def add_ui(app: web.Application) -> None:
    pages.add_routes(app)
    schedules.add_routes(app)
    assets.add_routes(app)
