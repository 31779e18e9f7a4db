"""The /ui dashboard, end to end in a real headless Chromium against a real `dwf serve`.

Chromium is Debian's (`/usr/bin/chromium`, installed by `make browser`, which .ci/run runs),
driven by Playwright; browsers cannot be downloaded here. Without it these tests skip,
unless DWF_REQUIRE_BROWSER is set (CI sets it): then they fail.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import BUILD
from serving import Server, prepare, wait_until

from host import DurableEngine, ManualClock, TenantId
from host.core import codec
from host.http.tokens import TokenStore
from host.store.lifecycle import Catchup

CHROMIUM = Path(os.environ.get("DWF_CHROMIUM", "/usr/bin/chromium"))
REPORTS = BUILD / "reports"
# Chromium without these reaches for Google's services, which this machine's closed
# network refuses; each run gets a fresh profile.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]

if not CHROMIUM.exists():
    if os.environ.get("DWF_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    pytest.skip(f"no {CHROMIUM} (make browser installs it)", allow_module_level=True)

from playwright.sync_api import BrowserContext, Page, expect, sync_playwright  # noqa: E402


class Site:
    """A served database: acme (onboarding) and globex, tokens for acme and an admin."""

    def __init__(self, directory: Path, built: Path) -> None:
        self.db = directory / "ui.sqlite3"

        async def setup(engine: DurableEngine, tokens: TokenStore) -> dict[str, str]:
            for tenant in ("acme", "globex"):
                await engine.registry.register(
                    TenantId(tenant), (built / "tenants" / f"{tenant}.wasm").read_bytes())
            _, admin = await tokens.create(None, "ui tests")
            _, acme = await tokens.create(TenantId("acme"), "ui tests")
            return {"admin": admin, "acme": acme}
        self.tokens = prepare(self.db, setup)
        self.server = Server(self.db)

    def api(self) -> httpx.Client:
        return self.server.client(self.tokens["admin"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("ui"), built)
    with site.server:
        yield site


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 860})
        try:
            yield context
        finally:
            context.close()


def _sign_in(page: Page, site: Site, who: str) -> None:
    page.goto(f"{site.server.url}/ui/")
    expect(page).to_have_url(f"{site.server.url}/ui/login?next=/ui/tenants")
    page.fill("input[name=token]", site.tokens[who])
    page.click("button:has-text('Sign in')")
    expect(page.locator("h1")).to_have_text("Tenants")


def _shot(page: Page, name: str) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(REPORTS / f"dashboard-{name}.png"), full_page=True)


def _step_names(page: Page) -> list[str]:
    return page.locator("table.timeline tbody tr td:nth-child(3)").all_inner_texts()


def test_an_operator_finds_an_instance_watches_it_and_steers_it(
        site: Site, browser: BrowserContext) -> None:
    page = browser.new_page()
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(request.url.split("/ui")[0]))
    page.goto(f"{site.server.url}/ui/login")
    page.fill("input[name=token]", "dwf_nope_nope")
    page.click("button:has-text('Sign in')")
    expect(page.locator(".notice.failed")).to_contain_text("unknown or revoked")
    _sign_in(page, site, "admin")
    expect(page.locator("table.grid")).to_contain_text("acme")
    expect(page.locator("table.grid")).to_contain_text("globex")

    with site.api() as api:
        api.post("/v1/tenants/acme/instances", json={
            "workflow": "onboarding", "id": "onboard-ada",
            "params": {"email": "ada@example.com", "nudge_after_ms": 2500}}).raise_for_status()
        for n in range(3):  # others to search through
            api.post("/v1/tenants/acme/instances", json={
                "workflow": "onboarding", "id": f"other-{n}",
                "params": {"email": "x@example.com", "nudge_after_ms": 600_000}})

    # Find it: the tenant's instances, searched by id.
    page.click("a:has-text('instances') >> nth=0")
    page.fill("input[name=q]", "ada")
    page.click("button:has-text('Filter')")
    rows = page.locator("table.grid tbody tr")
    expect(rows).to_have_count(1)
    page.click("a:has-text('onboard-ada')")
    expect(page.locator("h1")).to_have_text("Instance onboard-ada")

    # Its timeline fills in while the page stays open (polling, no reload).
    page.evaluate("window.stayedOpen = true")
    expect(page.locator("table.timeline")).to_contain_text("nudge-delay", timeout=15_000)
    _shot(page, "sleeping")
    expect(page.locator("table.timeline")).to_contain_text("manager-approval", timeout=20_000)
    assert ["create-account", "send-welcome-email", "nudge-delay", "send-nudge-email",
            "manager-approval"] == _step_names(page)
    assert page.evaluate("window.stayedOpen") is True
    expect(page.locator("#status")).to_have_text("waiting")
    sleep_bar = page.locator("tr:has-text('nudge-delay') rect.sleep")
    assert "slept" in (sleep_bar.get_attribute("data-title") or "")

    # Pause and resume.
    page.click("button:has-text('Pause')")
    expect(page.locator(".notice.done")).to_have_text("pause: the instance is paused")
    expect(page.locator("#status")).to_have_text("paused")
    page.click("button:has-text('Resume')")
    expect(page.locator(".notice.done")).to_have_text("resume: the instance is queued")
    expect(page.locator("#status")).to_have_text("waiting", timeout=15_000)

    # Send the event it waits for; it completes.
    page.fill("input[name=type]", "approval")
    page.fill("textarea[name=payload]", '{"approved": true}')
    page.click("button:has-text('Send')")
    expect(page.locator(".notice.done")).to_have_text("sent 'approval'")
    expect(page.locator("#status")).to_have_text("complete", timeout=15_000)
    expect(page.locator(".outcome")).to_contain_text('"outcome": "activated"')
    expect(page.locator("table.timeline")).to_contain_text("activate-account")
    _shot(page, "instance")
    assert {site.server.url} == origins  # every asset came from the server itself


def test_terminate_and_restart_and_refusals_that_say_why(
        site: Site, browser: BrowserContext) -> None:
    with site.api() as api:
        api.post("/v1/tenants/acme/instances", json={
            "workflow": "onboarding", "id": "done-1",
            "params": {"email": "bo@example.com", "nudge_after_ms": 600_000}}
                 ).raise_for_status()
    page = browser.new_page()
    _sign_in(page, site, "admin")
    page.goto(f"{site.server.url}/ui/tenants/acme/instances/done-1")
    page.fill("input[name=type]", "approval")
    page.fill("textarea[name=payload]", "{not json")
    page.click("button:has-text('Send')")
    expect(page.locator(".notice.failed")).to_contain_text("the payload is not valid JSON")
    page.click("button:has-text('Terminate')")
    expect(page.locator(".notice.done")).to_have_text("terminate: the instance is terminated")
    expect(page.locator("#status")).to_have_text("terminated")
    page.fill("input[name=type]", "approval")
    page.click("button:has-text('Send')")
    expect(page.locator(".notice.failed")).to_contain_text("is terminated: it takes no more")
    page.click("button:has-text('Restart')")
    expect(page.locator(".notice.done")).to_have_text("restart: the instance is queued")
    expect(page.locator("table.timeline")).to_contain_text("nudge-delay", timeout=15_000)
    expect(page.locator("#status")).to_have_text("waiting")


def test_a_tenant_token_sees_only_its_tenant(site: Site, browser: BrowserContext) -> None:
    page = browser.new_page()
    _sign_in(page, site, "acme")
    grid = page.locator("table.grid")
    expect(grid).to_contain_text("acme")
    expect(grid).not_to_contain_text("globex")
    response = page.goto(f"{site.server.url}/ui/tenants/globex/instances")
    assert response is not None and 404 == response.status
    expect(page.locator(".notice.failed")).to_have_text("unknown tenant 'globex'")
    response = page.goto(f"{site.server.url}/ui/tenants/nobody")
    assert response is not None and 404 == response.status  # the same as for globex

    cookies = {c["name"]: c for c in browser.cookies()}
    session = cookies["dwf_session"]
    assert (True, "Strict", "/ui") == (session["httpOnly"], session["sameSite"], session["path"])
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it

    page.click("button:has-text('Sign out')")
    expect(page.locator("h1")).to_have_text("Sign in")
    page.goto(f"{site.server.url}/ui/tenants")
    expect(page.locator("h1")).to_have_text("Sign in")


def test_module_versions_show_their_instances_and_roll_back(
        site: Site, browser: BrowserContext, built: Path) -> None:
    with site.api() as api:
        api.post("/v1/tenants/globex/instances", json={"workflow": "billing_retry",
                                                       "params": {"amount_cents": 1}})
        api.post("/v1/tenants/globex/modules",  # version 2: another module
                 content=(built / "guests" / "testkit.wasm").read_bytes()).raise_for_status()
    page = browser.new_page()
    _sign_in(page, site, "admin")
    page.goto(f"{site.server.url}/ui/tenants/globex")
    rows = page.locator("table.grid >> nth=0").locator("tbody tr")
    expect(rows.nth(0)).to_contain_text("v2 active")
    expect(rows.nth(1).locator("td.num")).to_have_text("1")  # v1 runs the one instance
    page.click("button:has-text('Activate v1')")
    expect(page.locator(".notice.done")).to_have_text(
        "version 1 is active: new instances run it")
    expect(rows.nth(1)).to_contain_text("v1 active")
    _shot(page, "versions")


def test_actions_need_the_session_and_its_csrf_token(site: Site) -> None:
    url = site.server.url
    with httpx.Client(base_url=url) as http:
        login = http.get("/ui/login")
        challenge = login.text.split('name="csrf" value="')[1].split('"')[0]
        signed_in = http.post("/ui/login", data={"token": site.tokens["admin"],
                                                 "csrf": challenge, "next": "/ui/tenants"})
        assert 303 == signed_in.status_code
        forged = http.post("/ui/tenants/acme/instances/onboard-ada/terminate",
                           data={"csrf": "guessed"})
        assert 403 == forged.status_code and "stale" in forged.text
        huge = http.post("/ui/tenants/acme/instances/onboard-ada/events",
                         data={"type": "x", "payload": "x" * (2 * 1024 * 1024)})
        assert 413 == huge.status_code and "the limit is 1048576" in huge.text
    with httpx.Client(base_url=url) as anonymous:
        refused = anonymous.post("/ui/login", data={"token": site.tokens["admin"],
                                                    "csrf": "no-cookie"})
        assert 403 == refused.status_code
        assert 303 == anonymous.get("/ui/tenants").status_code  # to the sign-in page


def test_pages_use_no_inline_script_and_say_so(site: Site) -> None:
    with httpx.Client(base_url=site.server.url) as http:
        page = http.get("/ui/login")
        script = http.get("/ui/static/app.js")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in page.text and (200, "text/javascript") == (
        script.status_code, script.headers["content-type"].split(";")[0])



# -- cron schedules -------------------------------------------------------------------

ONBOARDING_PARAMS = '{"email": "cron@example.com", "nudge_after_ms": 600000}'


def _api_error(api: httpx.Client, tenant: str, body: dict[str, object]) -> str:
    """The API's message refusing a schedule (the page must say the same)."""
    refused = api.post(f"/v1/tenants/{tenant}/schedules", json=body)
    assert 400 <= refused.status_code < 500, refused.text
    return str(refused.json()["error"]["message"])


def _schedule_ids(api: httpx.Client, tenant: str) -> list[str]:
    listed = api.get(f"/v1/tenants/{tenant}/schedules")
    listed.raise_for_status()
    return [s["id"] for s in listed.json()["schedules"]]


def _create_form(page: Page, **fields: str) -> None:
    for name, default in (("workflow", ""), ("cron", ""), ("timezone", "UTC"), ("id", "")):
        page.fill(f".create-schedule input[name={name}]", fields.get(name, default))
    page.fill(".create-schedule textarea[name=params]", fields.get("params", ""))
    page.select_option(".create-schedule select[name=overlap]", fields.get("overlap", "skip"))
    page.select_option(".create-schedule select[name=catchup]", fields.get("catchup", "none"))
    page.click(".create-schedule button:has-text('Create')")


def test_schedules_are_created_paused_resumed_and_deleted_and_bad_ones_refused(
        site: Site, browser: BrowserContext) -> None:
    page = browser.new_page()
    _sign_in(page, site, "admin")
    page.click("header nav a:has-text('Schedules')")
    expect(page.locator("h1")).to_have_text("Schedules")
    page.select_option("select[name=tenant]", "acme")
    page.click("button:has-text('Show')")
    expect(page.locator("h1")).to_have_text("Schedules of acme")
    with site.api() as api:
        before = _schedule_ids(api, "acme")
        with pytest.raises(codec.CodecError) as bad_json:
            codec.parse_json("{not json", "params")  # as `dwf schedule create` says it
        refusals: list[tuple[dict[str, str], str | None]] = [
            ({"workflow": "onboarding", "cron": "61 * * * *"}, None),
            ({"workflow": "onboarding", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}, None),
            ({"workflow": "nope", "cron": "0 9 * * *"}, None),
            ({"workflow": "onboarding", "cron": "0 9 * * *"}, str(bad_json.value)),
        ]
        for fields, message in refusals:
            expected = message or _api_error(api, "acme", dict(fields))
            _create_form(page, **fields, params="{not json" if message else "")
            expect(page.locator(".notice.failed")).to_have_text(expected)
            for name, value in fields.items():  # the form stays as it was typed
                expect(page.locator(f".create-schedule [name={name}]")).to_have_value(value)
        assert before == _schedule_ids(api, "acme")  # nothing was created
    expect(page.locator(".notice.failed")).to_have_count(1)
    _shot(page, "schedule-refused")

    _create_form(page, workflow="onboarding", cron="0 9 * * 1-5", timezone="Europe/Berlin",
                 id="weekdays", params=ONBOARDING_PARAMS, overlap="allow", catchup="last")
    expect(page.locator(".notice.done")).to_have_text(
        "schedule weekdays starts onboarding at '0 9 * * 1-5' (Europe/Berlin)")
    with site.api() as api:
        created = api.get("/v1/tenants/acme/schedules/weekdays").json()
    row = page.locator("#schedule-acme-weekdays")
    cells = row.locator("td").all_inner_texts()
    assert ["weekdays", "onboarding", "0 9 * * 1-5", "Europe/Berlin", "allow", "last",
            "active"] == [c.strip() for c in cells[:7]]
    next_utc = datetime.fromtimestamp(created["next_tick_ms"] / 1000, UTC)
    local = next_utc.astimezone(ZoneInfo("Europe/Berlin"))
    assert (9, 0) == (local.hour, local.minute) and local.weekday() < 5
    expect(row.locator("td.next")).to_have_text(
        f"{next_utc:%Y-%m-%d %H:%M} UTC{local:%Y-%m-%d %H:%M %Z}")  # UTC, then Berlin's
    expect(row.locator("td.last-instance")).to_have_text("-")
    _shot(page, "schedules")

    row.locator("button:has-text('Pause')").click()
    expect(page.locator(".notice.done")).to_have_text("weekdays: paused")
    expect(page.locator("h1")).to_have_text("Schedules of acme")  # back where it was
    expect(row.locator("td.state")).to_have_text("paused")
    expect(row.locator("td.next")).to_have_text("-")
    row.locator("button:has-text('Resume')").click()
    expect(page.locator(".notice.done")).to_have_text(
        f"weekdays: active, next tick {next_utc:%Y-%m-%d %H:%M} UTC")
    expect(row.locator("td.state")).to_have_text("active")
    with site.api() as api:
        assert api.get("/v1/tenants/acme/schedules/weekdays").json()["paused"] is False
    row.locator("button:has-text('Delete')").click()
    expect(page.locator(".notice.done")).to_have_text(
        "deleted schedule weekdays (its instances stay)")
    expect(row).to_have_count(0)
    with site.api() as api:
        assert 404 == api.get("/v1/tenants/acme/schedules/weekdays").status_code


def test_a_schedules_last_tick_links_to_the_instance_it_started(
        site: Site, browser: BrowserContext) -> None:
    async def create_in_the_past(engine: DurableEngine, tokens: TokenStore) -> None:
        await engine.schedules.create(  # due now: the server's worker fires it
            TenantId("acme"), "onboarding", "* * * * *", schedule_id="minutely",
            params=json.loads(ONBOARDING_PARAMS), catchup=Catchup.LAST)
    past = ManualClock(int(time.time() * 1000) - 120_000)
    with ThreadPoolExecutor(1) as thread:  # this one runs Playwright's event loop
        thread.submit(prepare, site.db, create_in_the_past, clock=past).result()
    with site.api() as api:
        fired = wait_until(lambda: api.get("/v1/tenants/acme/schedules/minutely").json()
                           .get("last_instance_id"), what="the tick's instance")
        api.post("/v1/tenants/acme/schedules/minutely/pause").raise_for_status()
    page = browser.new_page()
    _sign_in(page, site, "acme")
    page.click("header nav a:has-text('Schedules')")
    row = page.locator("#schedule-acme-minutely")
    expect(row.locator("td.state")).to_have_text("paused")
    assert fired.startswith("minutely-")
    _shot(page, "schedule-fired")
    row.locator(f"td.last-instance a:has-text('{fired}')").click()
    expect(page.locator("h1")).to_have_text(f"Instance {fired}")
    expect(page.locator(".summary")).to_contain_text("onboarding")


def test_a_tenant_token_sees_and_touches_only_its_tenants_schedules(
        site: Site, browser: BrowserContext) -> None:
    with site.api() as api:
        api.post("/v1/tenants/globex/schedules", json={
            "workflow": "billing_retry", "cron": "@daily", "id": "nightly",
            "params": {"amount_cents": 1}}).raise_for_status()
        api.post("/v1/tenants/acme/schedules", json={
            "workflow": "onboarding", "cron": "@hourly", "id": "hourly"}).raise_for_status()
    page = browser.new_page()
    _sign_in(page, site, "admin")
    page.click("header nav a:has-text('Schedules')")
    expect(page.locator("#schedule-globex-nightly")).to_have_count(1)  # admin: every tenant
    expect(page.locator("#schedule-acme-hourly")).to_have_count(1)
    page.click("button:has-text('Sign out')")

    _sign_in(page, site, "acme")
    page.click("table.grid a[href='/ui/tenants/acme']")  # its page links to its schedules
    page.click("a:has-text('Its schedules')")
    expect(page.locator("h1")).to_have_text("Schedules of acme")
    expect(page.locator("#schedule-acme-hourly")).to_have_count(1)
    expect(page.locator("table.schedules")).not_to_contain_text("globex")
    expect(page.locator("select[name=tenant]")).to_have_count(0)
    response = page.goto(f"{site.server.url}/ui/schedules?tenant=globex")
    assert response is not None and 404 == response.status
    expect(page.locator(".notice.failed")).to_have_text("unknown tenant 'globex'")

    page.click("header nav a:has-text('Schedules')")  # unfiltered: still acme's only
    expect(page.locator("h1")).to_have_text("Schedules of acme")
    expect(page.locator("#schedule-acme-hourly")).to_have_count(1)
    expect(page.locator("table.schedules")).not_to_contain_text("nightly")

    # Even with this session's own CSRF token, another tenant's schedule is not found.
    csrf = page.locator("input[name=csrf] >> nth=0").get_attribute("value") or ""
    for action in ("pause", "delete"):
        refused = browser.request.post(
            f"{site.server.url}/ui/tenants/globex/schedules/nightly/{action}",
            form={"csrf": csrf, "back": "/ui/schedules"}, max_redirects=0)
        assert 404 == refused.status
    created = browser.request.post(f"{site.server.url}/ui/tenants/globex/schedules", form={
        "csrf": csrf, "workflow": "billing_retry", "cron": "@daily"}, max_redirects=0)
    assert 404 == created.status
    with site.api() as api:
        nightly = api.get("/v1/tenants/globex/schedules/nightly").json()
        assert (False, ["nightly"]) == (nightly["paused"], _schedule_ids(api, "globex"))


def _signed_in_cookie(url: str, token: str) -> str:
    with httpx.Client(base_url=url) as http:
        login = http.get("/ui/login")
        challenge = login.text.split('name="csrf" value="')[1].split('"')[0]
        # Sent by hand: a client keeps a Secure cookie off plain HTTP, as browsers do.
        http.cookies.clear()
        signed_in = http.post("/ui/login", data={"token": token, "csrf": challenge,
                                                 "next": "/ui/tenants"},
                              headers={"cookie": f"dwf_login={challenge}"})
        assert 303 == signed_in.status_code
        [session] = [value for value in signed_in.headers.get_list("set-cookie")
                     if value.startswith("dwf_session=")]
        return session


def test_cookies_are_secure_when_told_behind_a_tls_proxy(site: Site, tmp_path: Path) -> None:
    """A proxy that terminates TLS hands us plain HTTP: only the flag can say Secure."""
    plain = _signed_in_cookie(site.server.url, site.tokens["admin"])
    assert "dwf_session=" in plain and "secure" not in plain.lower()

    async def admin_token(engine: DurableEngine, tokens: TokenStore) -> str:
        return (await tokens.create(None, "behind a proxy"))[1]
    db = tmp_path / "tls.sqlite3"
    token = prepare(db, admin_token)
    with Server(db, "--secure-cookies") as behind_tls:
        told = _signed_in_cookie(behind_tls.url, token)
    attributes = [part.strip().lower() for part in told.split(";")]
    assert {"secure", "httponly", "samesite=strict", "path=/ui"} <= set(attributes), told
