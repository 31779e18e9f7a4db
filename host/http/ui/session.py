"""Signing in to the dashboard: an API token kept in an HttpOnly, SameSite=Strict cookie.

The cookie holds the token itself, so the dashboard sees exactly what the API would with
that token: a tenant token its own tenant, an admin token every tenant; a revoked token
signs its sessions out at once, and the server keeps no session state. JavaScript cannot
read the cookie (HttpOnly) and browsers send it only on requests that start on this site
(SameSite=Strict); every form that changes something also carries a CSRF token derived
from the session's token (an HMAC keyed by it: unforgeable without the token), and the
sign-in form one tied to a short-lived cookie of its own (no signing people in to an
attacker's session).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from ..common import CONFIG, TOKENS, HttpError
from ..tokens import Principal

SESSION_COOKIE = "dwf_session"
LOGIN_COOKIE = "dwf_login"
SESSION_SECONDS = 12 * 3600
"""How long a sign-in lasts (the token may be revoked sooner: `dwf token revoke`)."""

UI_PATH = "/ui"


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    """The token forms carry: HMAC-SHA256 of a fixed label, keyed by the session's token."""


def _csrf(token: str) -> str:
    return hmac.new(token.encode(), b"dwf-ui-csrf", hashlib.sha256).hexdigest()


async def current(request: web.Request) -> Session | None:
    """The request's session, or None (no cookie, or its token is unknown or revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    principal = await request.app[TOKENS].authenticate(token)
    if principal is None:
        return None
    request["token_id"] = principal.token_id
    return Session(principal, _csrf(token))


def check_csrf(session: Session, form: dict[str, str]) -> None:
    """Refuse (403) a form that does not carry the session's CSRF token."""
    if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
        raise HttpError(403, "csrf", "this form is stale or did not come from this "
                        "dashboard: reload the page and try again")


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int) -> None:
    # Secure when served over TLS, or told so (`dwf serve --secure-cookies`, behind a
    # proxy that terminates TLS: the request reaching us is plain HTTP then).
    response.set_cookie(name, value, httponly=True, samesite="Strict", path=UI_PATH,
                        max_age=max_age,
                        secure=request.secure or request.app[CONFIG].secure_cookies)


def new_login_challenge() -> str:
    """A fresh CSRF value for a sign-in form (`set_login_challenge` sets its cookie)."""
    return secrets.token_urlsafe(24)


def set_login_challenge(request: web.Request, response: web.StreamResponse,
                        value: str) -> None:
    _set_cookie(request, response, LOGIN_COOKIE, value, 3600)


def check_login_challenge(request: web.Request, form: dict[str, str]) -> None:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
        raise HttpError(403, "csrf", "the sign-in form is stale: reload it and sign in again")


def start(request: web.Request, response: web.StreamResponse, token: str) -> None:
    _set_cookie(request, response, SESSION_COOKIE, token, SESSION_SECONDS)
    response.del_cookie(LOGIN_COOKIE, path=UI_PATH)


def end(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path=UI_PATH)
