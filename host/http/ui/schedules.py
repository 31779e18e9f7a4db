"""The dashboard's cron schedules: every schedule the token may see, with its next tick and
the instance its last tick started, and the forms that create, pause, resume and delete
them (the same checks and messages as `dwf schedule` and /v1, through `engine.schedules`).

One page, /ui/schedules, optionally narrowed to one tenant (`?tenant=`): a tenant token
sees its own tenant's schedules only, and any other tenant is "not found", as in the API.
A create refused for bad input shows the page again with the form as it was filled in and
the one-line reason; nothing is created.
"""

from __future__ import annotations

import contextlib
import functools
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from aiohttp import web

from ...core import codec
from ...core.errors import DwfError
from ...core.ids import TenantId
from ...store.lifecycle import Catchup, Overlap, Schedule
from ..api_schedules import create_from
from ..auth import tenant_for
from ..common import ENGINE, HTTP_STATUS
from .pages import back, checked_form, json_field, notices, page, render, tenant_in_path
from .session import UI_PATH, Session

PAGE = f"{UI_PATH}/schedules"
BLANK_FORM = {"workflow": "", "cron": "", "timezone": "UTC", "params": "",
              "overlap": Overlap.SKIP.value, "catchup": Catchup.NONE.value, "id": ""}
"""The create form's fields (those of the API's body) and what they start with; a refused
form shows them as they were typed."""

ACTIONS = ("pause", "resume", "delete")


@dataclass(frozen=True, slots=True)
class Tick:
    """A tick for people: in UTC, and in the schedule's time zone unless that is UTC."""

    utc: str
    local: str | None

    @classmethod
    def of(cls, ms: int | None, zone: str) -> Tick:
        if ms is None:
            return cls("-", None)
        try:
            moment = datetime.fromtimestamp(ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):  # far future (a clamped tick)
            return cls(f"{ms} ms", None)
        local = None
        if zone != "UTC":
            with contextlib.suppress(ZoneInfoNotFoundError):  # gone from a newer tzdata
                local = moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
        return cls(moment.strftime("%Y-%m-%d %H:%M UTC"), local)


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule as its row shows it."""

    schedule: Schedule
    params: Any
    """Its instances' params, decoded."""

    next_tick: Tick
    last_tick: Tick


def _row(schedule: Schedule) -> ScheduleRow:
    zone = schedule.timezone
    return ScheduleRow(schedule, codec.to_jsonable(codec.stored_value(schedule.params)),
                       Tick.of(schedule.next_tick_ms, zone), Tick.of(schedule.last_tick_ms, zone))


def _view_path(tenant: str | None) -> str:
    """The page, narrowed to `tenant` (None: every tenant the token may see)."""
    return f"{PAGE}?{urllib.parse.urlencode({'tenant': tenant})}" if tenant else PAGE


@functools.cache
def _zones() -> list[str]:
    return sorted(available_timezones())


async def _render(request: web.Request, signed_in: Session, shown: TenantId | None, *,
                  form: dict[str, str] | None = None, error: str | None = None,
                  status: int = 200) -> web.Response:
    """The page; `shown` narrows it to one tenant, whose create form it then has."""
    engine = request.app[ENGINE]
    principal = signed_in.principal
    tenants = [t for t in await engine.registry.tenants() if principal.may_act_for(t.tenant_id)]
    if shown is None and principal.tenant_id is not None:
        shown = principal.tenant_id  # a tenant token: its own tenant, always
    found = [s for s in await engine.schedules.list(shown)
             if principal.may_act_for(s.tenant_id)]
    workflows = next((t.workflows for t in tenants if t.tenant_id == shown), ())
    return render("schedules.html", {
        "session": signed_in, "shown": shown, "tenants": [t.tenant_id for t in tenants],
        "rows": [_row(s) for s in found], "workflows": workflows, "zones": _zones(),
        "overlaps": [o.value for o in Overlap], "catchups": [c.value for c in Catchup],
        "form": form or BLANK_FORM, "back": _view_path(shown),
        **notices(request), **({"error": error} if error else {})}, status)


@page
async def schedules(request: web.Request, signed_in: Session) -> web.StreamResponse:
    raw = request.query.get("tenant")
    shown = tenant_for(request, signed_in.principal, raw) if raw else None
    return await _render(request, signed_in, shown)


@page
async def create(request: web.Request, signed_in: Session) -> web.StreamResponse:
    tid = tenant_in_path(request, signed_in)
    form = await checked_form(request, signed_in)
    typed = {name: form.get(name, "").strip() for name in BLANK_FORM}
    try:
        body: dict[str, Any] = {name: value for name, value in typed.items()
                                if value and name != "params"}
        body["params"] = json_field(typed, "params", "params")
        created = await create_from(request.app[ENGINE].schedules, tid, body)
    except DwfError as exc:
        return await _render(request, signed_in, tid, form=typed, error=str(exc),
                             status=HTTP_STATUS.get(exc.code, 400))
    return back(_view_path(tid), done=f"schedule {created.schedule_id} starts "
                f"{created.workflow} at '{created.cron}' ({created.timezone})")


def _control(action: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @page
    async def control(request: web.Request, signed_in: Session) -> web.StreamResponse:
        tid = tenant_in_path(request, signed_in)
        form = await checked_form(request, signed_in)
        schedule_id = request.match_info["schedule"]
        path = _back_path(form)
        try:
            changed = await getattr(request.app[ENGINE].schedules, action)(tid, schedule_id)
        except DwfError as exc:
            return back(path, error=str(exc))
        if action == "delete":
            return back(path, done=f"deleted schedule {schedule_id} (its instances stay)")
        next_tick = Tick.of(changed.next_tick_ms, changed.timezone)
        return back(path, done=f"{schedule_id}: paused" if changed.paused else
                    f"{schedule_id}: active, next tick {next_tick.utc}")
    control.__name__ = f"{action}_schedule"
    return control


def _back_path(form: dict[str, str]) -> str:
    """Where an action goes back to: the page as it was shown (never anywhere else)."""
    raw = form.get("back", "")
    return raw if raw == PAGE or raw.startswith(f"{PAGE}?") else PAGE


def add_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, schedules)
    base = f"{UI_PATH}/tenants/{{tenant}}/schedules"
    app.router.add_post(base, create)
    for action in ACTIONS:
        app.router.add_post(f"{base}/{{schedule}}/{action}", _control(action))
