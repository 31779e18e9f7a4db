"""Making one tenant's outbound request: checked at every hop, capped, on its own session.

Each tenant has its own aiohttp session (no cookies, no proxies from the environment),
whose resolver refuses non-public addresses unless one of the tenant's private rules
allows that exact address; the connection goes to the address the resolver vetted. URLs
with an IP literal skip resolution, so they are vetted here first. Redirects are followed
here, not by aiohttp, at most `MAX_REDIRECTS` of them, each hop checked against the rules
and the guard like the first; secret-bearing headers do not follow a redirect to another
origin. The body is read in chunks and refused past the tenant's response limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..core.errors import InvalidInput
from . import addresses
from .rules import EgressRule, Target, refusal

MAX_REDIRECTS = 5
_READ_CHUNK = 64 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}


class EgressError(Exception):
    """A request that could not be made or did not complete; `name` is the step error."""

    def __init__(self, name: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.retryable = retryable


def denied(message: str) -> EgressError:
    return EgressError("EgressDenied", message, retryable=False)


@dataclass(frozen=True, slots=True)
class Outgoing:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    secret_headers: frozenset[str]
    """Names of headers that carry a secret: dropped on a redirect to another origin."""


@dataclass(frozen=True, slots=True)
class Received:
    status: int
    url: str
    headers: list[tuple[str, str]]
    body: bytes


class _AddressRefused(OSError):
    pass


class _VettedResolver(AbstractResolver):
    """DNS answers with the non-public addresses taken out (unless a rule allows one)."""

    def __init__(self, rules: Callable[[], list[EgressRule]]) -> None:
        self._rules = rules

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family)
        found: list[ResolveResult] = []
        refused: list[str] = []
        for family_found, _, proto, _, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0])
            reason = refusal_of(address, port, self._rules())
            if reason is not None:
                refused.append(f"{address} ({reason})")
                continue
            found.append({"hostname": host, "host": str(address), "port": port,
                          "family": family_found, "proto": proto,
                          "flags": socket.AI_NUMERICHOST})
        if not found:
            raise _AddressRefused(f"{host} resolves only to addresses a tenant's request may "
                                  f"not reach: {', '.join(refused)}")
        return found

    async def close(self) -> None:
        return None


def refusal_of(address: addresses.IPAddress, port: int,
               rules: list[EgressRule]) -> str | None:
    """Why the guard refuses `address` (None if public, or a private rule allows it)."""
    reason = addresses.refusal(address)
    if reason is None or any(rule.exempts(address, port) for rule in rules):
        return None
    return reason


class TenantClient:
    """One tenant's outbound session; `rules` is read at every hop."""

    def __init__(self, rules: Callable[[], list[EgressRule]]) -> None:
        self._rules = rules
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=_VettedResolver(self._rules),
                                             use_dns_cache=False, limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, request: Outgoing, timeout_s: float, max_bytes: int) -> Received:
        """The response, after redirects; EgressError saying why not."""
        deadline = time.monotonic() + timeout_s
        method, url, body = request.method, request.url, request.body
        headers = list(request.headers)
        origin = self.check(url)
        for _ in range(MAX_REDIRECTS + 1):
            received = await self._hop(method, url, headers, body, deadline, max_bytes)
            location = dict(received.headers).get("location")
            if received.status not in _REDIRECTS or location is None:
                return received
            url = str(URL(url).join(URL(location)))
            target = self.check(url, redirect=True)
            if (target.scheme, target.host, target.port) != (origin.scheme, origin.host,
                                                             origin.port):
                headers = [(name, value) for name, value in headers
                           if name not in request.secret_headers
                           and name not in ("authorization", "cookie")]
            if received.status == 303 or (received.status in (301, 302) and method == "POST"):
                method, body = "GET", b""
                headers = [(name, value) for name, value in headers
                           if name != "content-type"]
        raise EgressError("EgressFailed", f"more than {MAX_REDIRECTS} redirects, the last to "
                          f"{url}", retryable=False)

    def check(self, url: str, *, redirect: bool = False) -> Target:
        """The URL's target if the rules allow it, and its address if it is a literal."""
        where = "a redirect to " if redirect else ""
        try:
            target = Target.of(url)
        except InvalidInput as exc:
            raise denied(f"{where}{exc}") from None
        rules = self._rules()
        reason = refusal(rules, target)
        if reason is not None:
            raise denied(f"{where}{reason}")
        address = target.address
        if address is not None:
            why = refusal_of(address, target.port, rules)
            if why is not None:
                raise denied(f"{where}{target} is {why}; only an operator can allow it, for "
                             f"exactly that address (dwf tenant egress TENANT --allow "
                             f"{target} --private)")
        return target

    async def _hop(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes,
                   deadline: float, max_bytes: int) -> Received:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EgressError("EgressTimeout", "no time was left for the request",
                              retryable=True)
        try:
            async with asyncio.timeout(remaining):
                async with self._client().request(
                        method, url, headers=headers, data=body or None,
                        allow_redirects=False) as response:
                    declared = response.content_length
                    if declared is not None and declared > max_bytes:
                        raise _too_large(max_bytes)
                    chunks, size = [], 0
                    async for chunk in response.content.iter_chunked(_READ_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise _too_large(max_bytes)
                        chunks.append(chunk)
                    return Received(response.status, str(response.url),
                                    [(name.lower(), value)
                                     for name, value in response.headers.items()],
                                    b"".join(chunks))
        except TimeoutError:
            raise EgressError("EgressTimeout", f"{method} {_shown(url)} did not complete in "
                              "time", retryable=True) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _AddressRefused):
                raise denied(str(exc.os_error)) from None
            raise EgressError("EgressFailed", f"cannot connect to {_shown(url)}: "
                              f"{exc.os_error.strerror or exc.os_error}", True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EgressError("EgressFailed", f"{method} {_shown(url)} failed: "
                              f"{type(exc).__name__}: {exc}", retryable=True) from None


def _too_large(max_bytes: int) -> EgressError:
    return EgressError("PayloadTooLarge", f"the response body is over the tenant's limit of "
                       f"{max_bytes} bytes", retryable=False)


def _shown(url: str) -> str:
    """The URL as logged and reported: no query string, which may hold tokens."""
    return url.split("?", 1)[0]
