"""The dashboard's pages and actions: server-rendered HTML (Jinja2) under /ui.

Every page needs a session (session.py) and sees what its token would see through the API:
a tenant token its own tenant only (any other is "not found", as for one that does not
exist), an admin token every tenant. Actions are POSTed forms carrying the session's CSRF
token; each answers with a redirect back to the page (so a reload repeats nothing) and a
line saying what happened or why not.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from ...core import codec
from ...core.errors import DwfError, InvalidInput
from ...core.ids import TenantId
from ...core.model import Status
from ...durable.instances import InstanceQuery, decode_cursor
from ..api import CONTROL_ACTIONS
from ..auth import tenant_for
from ..common import CONFIG, ENGINE, HTTP_STATUS, TOKENS, HttpError
from . import session, timeline
from .session import UI_PATH, Session

PAGE_SIZE = 50
LIVE_POLL_MS = 1000
"""How often an instance page asks for its live part while the instance runs."""

Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]

_SECURITY_HEADERS = {
    # No inline script or style anywhere: the timeline is SVG placed by attributes.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("host.http.ui", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = timeline.when
    env.filters["json"] = lambda value: json.dumps(codec.to_jsonable(value), indent=2,
                                                   ensure_ascii=False)
    env.globals["ui"] = UI_PATH
    return env


def render(template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    body = _templates().get_template(template).render(context)
    return web.Response(text=body, status=status, content_type="text/html",
                        headers=_SECURITY_HEADERS)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_SECURITY_HEADERS})


def _error_page(exc: Exception, signed_in: Session | None) -> web.Response:
    if isinstance(exc, HttpError):
        status, message = exc.status, exc.message
    else:
        assert isinstance(exc, DwfError)
        status, message = HTTP_STATUS.get(exc.code, 400), str(exc)
    return render("error.html", {"message": message, "session": signed_in}, status)


def page(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler that needs a session (else: to the sign-in page) and shows errors as a
    page, not JSON."""
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        signed_in = await session.current(request)
        if signed_in is None:
            if request.method != "GET":
                return render("error.html", {"message": "your session ended: sign in again",
                                             "session": None}, 401)
            return redirect(f"{UI_PATH}/login?next={urllib.parse.quote(request.path_qs)}")
        try:
            return await handler(request, signed_in)
        except (DwfError, HttpError) as exc:
            return _error_page(exc, signed_in)
    return wrapper


def back(path: str, *, done: str | None = None, error: str | None = None) -> web.Response:
    """Back to `path` (its query kept) with a line saying what happened."""
    query = {key: value for key, value in (("done", done), ("error", error)) if value}
    if not query:
        return redirect(path)
    return redirect(f"{path}{'&' if '?' in path else '?'}{urllib.parse.urlencode(query)}")


def notices(request: web.Request) -> dict[str, str | None]:
    return {"done": request.query.get("done"), "error": request.query.get("error")}


async def _posted(request: web.Request) -> dict[str, str]:
    """A form's fields, its body capped like the API's (`--max-body-bytes`)."""
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, "payload_too_large",
                        f"the form is {request.content_length} bytes; the limit is {limit}")
    return {key: str(value) for key, value in (await request.post()).items()}


async def checked_form(request: web.Request, signed_in: Session) -> dict[str, str]:
    form = await _posted(request)
    session.check_csrf(signed_in, form)
    return form


def json_field(form: dict[str, str], name: str, what: str) -> Any:
    """A form's JSON field (left empty: None), or InvalidInput saying what is wrong with
    it, in the words the CLI and the API use."""
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        return codec.parse_json(raw, what)
    except codec.CodecError as exc:
        raise InvalidInput(str(exc)) from None


# -- signing in -----------------------------------------------------------------------

def _login_form(request: web.Request, next_path: str | None, status: int = 200,
                error: str | None = None) -> web.Response:
    challenge = session.new_login_challenge()
    response = render("login.html", {"next": _safe_next(next_path), "error": error,
                                     "csrf": challenge, "session": None}, status)
    session.set_login_challenge(request, response, challenge)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    return _login_form(request, request.query.get("next"))


async def login(request: web.Request) -> web.StreamResponse:
    try:
        form = await _posted(request)
        session.check_login_challenge(request, form)
    except HttpError as exc:
        return _error_page(exc, None)
    token = form.get("token", "").strip()
    principal = await request.app[TOKENS].authenticate(token) if token else None
    if principal is None:
        return _login_form(request, form.get("next"), 401,
                           "that token is unknown or revoked: `dwf token create TENANT` "
                           "(or `--admin`) makes one")
    request["token_id"] = principal.token_id
    response = redirect(_safe_next(form.get("next")))
    session.start(request, response, token)
    return response


def _safe_next(raw: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if raw and raw.startswith(f"{UI_PATH}/") and not raw.startswith("//"):
        return raw
    return f"{UI_PATH}/tenants"


@page
async def logout(request: web.Request, signed_in: Session) -> web.StreamResponse:
    await checked_form(request, signed_in)
    response = redirect(f"{UI_PATH}/login")
    session.end(response)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    return redirect(f"{UI_PATH}/tenants")


# -- tenants and their module versions ------------------------------------------------

@page
async def tenants(request: web.Request, signed_in: Session) -> web.StreamResponse:
    engine = request.app[ENGINE]
    visible = [t for t in await engine.registry.tenants()
               if signed_in.principal.may_act_for(t.tenant_id)]
    counts = await engine.store.count_instances()
    return render("tenants.html", {
        "session": signed_in, "tenants": visible, "statuses": [s.value for s in Status],
        "counts": {(tenant, status.value): n for (tenant, status), n in counts.items()}})


def tenant_in_path(request: web.Request, signed_in: Session) -> TenantId:
    return tenant_for(request, signed_in.principal, request.match_info["tenant"])


@page
async def tenant(request: web.Request, signed_in: Session) -> web.StreamResponse:
    tid = tenant_in_path(request, signed_in)
    engine = request.app[ENGINE]
    versions = await engine.registry.versions(tid)
    return render("tenant.html", {
        "session": signed_in, "tenant": tid, "versions": versions,
        "per_version": {usage.sha256: usage for usage in await engine.upgrades.versions(tid)},
        "limits": (await engine.registry.limits_for(tid)).as_dict(), **notices(request)})


@page
async def activate(request: web.Request, signed_in: Session) -> web.StreamResponse:
    tid = tenant_in_path(request, signed_in)
    form = await checked_form(request, signed_in)
    path = f"{UI_PATH}/tenants/{tid}"
    try:
        info = await request.app[ENGINE].registry.activate(tid, form.get("version", ""))
    except DwfError as exc:
        return back(path, error=str(exc))
    return back(path, done=f"version {info.version} is active: new instances run it")


# -- instances ------------------------------------------------------------------------

def _time_filter(raw: str | None, name: str) -> int | None:
    """A `datetime-local` value (UTC) as epoch ms."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} {raw!r} is not a time like 2026-12-01T09:30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@page
async def instances(request: web.Request, signed_in: Session) -> web.StreamResponse:
    tid = tenant_in_path(request, signed_in)
    q = request.query
    raw_status = q.get("status") or None
    try:
        status = Status(raw_status) if raw_status else None
    except ValueError:
        raise InvalidInput(f"unknown status {raw_status!r}") from None
    query = InstanceQuery(
        tid, status, q.get("workflow") or None,
        created_from_ms=_time_filter(q.get("from"), "from"),
        created_before_ms=_time_filter(q.get("to"), "to"),
        id_contains=q.get("q") or None, limit=PAGE_SIZE,
        after=decode_cursor(q["cursor"]) if q.get("cursor") else None)
    engine = request.app[ENGINE]
    found = await engine.instances.page(query)
    filters = {key: q.get(key, "") for key in ("status", "workflow", "from", "to", "q")}
    next_url = None
    if found.next_cursor:
        next_url = request.path + "?" + urllib.parse.urlencode(
            {**{k: v for k, v in filters.items() if v}, "cursor": found.next_cursor})
    workflows = sorted({w for v in await engine.registry.versions(tid) for w in v.workflows})
    return render("instances.html", {
        "session": signed_in, "tenant": tid, "page": found, "filters": filters,
        "statuses": [s.value for s in Status], "workflows": workflows, "next_url": next_url,
        "first_page": bool(q.get("cursor"))})


async def _instance_context(request: web.Request, tid: TenantId) -> dict[str, Any]:
    engine = request.app[ENGINE]
    iid = request.match_info["id"]
    status = await engine.instances.status(tid, iid)
    view = status.to_dict()
    versions = {v.sha256: v.version for v in await engine.registry.versions(tid)}
    return {
        "tenant": tid, "instance": view, "finished": status.status.finished,
        "version": versions.get(status.module_sha256),
        "children": await engine.instances.children(tid, iid),
        "events": await engine.instances.buffered_events(tid, iid),
        "timeline": timeline.build(view, engine.clock.now_ms()),
        "actions": _actions(status.status), "poll_ms": LIVE_POLL_MS,
    }


def _actions(status: Status) -> list[str]:
    """The control actions that make sense now (the others would only be refused)."""
    if status.finished:
        return ["restart"]
    if status is Status.PAUSED:
        return ["resume", "terminate", "restart"]
    if status is Status.WAITING_FOR_PAUSE:
        return ["resume", "terminate"]
    return ["pause", "terminate", "restart"]


@page
async def instance(request: web.Request, signed_in: Session) -> web.StreamResponse:
    tid = tenant_in_path(request, signed_in)
    context = await _instance_context(request, tid)
    return render("instance.html", {"session": signed_in, **context, **notices(request)})


@page
async def instance_live(request: web.Request, signed_in: Session) -> web.StreamResponse:
    """The part of an instance page that changes while it runs (polled by app.js)."""
    tid = tenant_in_path(request, signed_in)
    context = await _instance_context(request, tid)
    return render("_live.html", {"session": signed_in, **context})


def _control(action: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @page
    async def control(request: web.Request, signed_in: Session) -> web.StreamResponse:
        tid = tenant_in_path(request, signed_in)
        await checked_form(request, signed_in)
        iid = request.match_info["id"]
        path = f"{UI_PATH}/tenants/{tid}/instances/{iid}"
        try:
            status: Status = await getattr(request.app[ENGINE].instances, action)(tid, iid)
        except DwfError as exc:
            return back(path, error=str(exc))
        return back(path, done=f"{action}: the instance is {status.value}")
    control.__name__ = f"{action}_instance"
    return control


@page
async def send_event(request: web.Request, signed_in: Session) -> web.StreamResponse:
    tid = tenant_in_path(request, signed_in)
    form = await checked_form(request, signed_in)
    iid = request.match_info["id"]
    path = f"{UI_PATH}/tenants/{tid}/instances/{iid}"
    event_type = form.get("type", "").strip()
    try:
        if not event_type:
            raise InvalidInput("an event needs a type")
        payload = json_field(form, "payload", "the payload")
        await request.app[ENGINE].instances.send_event(tid, iid, event_type, payload)
    except DwfError as exc:
        return back(path, error=str(exc))
    return back(path, done=f"sent {event_type!r}")


def add_routes(app: web.Application) -> None:
    base = UI_PATH
    app.router.add_get(base, home)
    app.router.add_get(f"{base}/", home)
    app.router.add_get(f"{base}/login", login_page)
    app.router.add_post(f"{base}/login", login)
    app.router.add_post(f"{base}/logout", logout)
    app.router.add_get(f"{base}/tenants", tenants)
    app.router.add_get(f"{base}/tenants/{{tenant}}", tenant)
    app.router.add_post(f"{base}/tenants/{{tenant}}/activate", activate)
    app.router.add_get(f"{base}/tenants/{{tenant}}/instances", instances)
    one = f"{base}/tenants/{{tenant}}/instances/{{id}}"
    app.router.add_get(one, instance)
    app.router.add_get(f"{one}/live", instance_live)
    app.router.add_post(f"{one}/events", send_event)
    for action in CONTROL_ACTIONS:
        app.router.add_post(f"{one}/{action}", _control(action))
