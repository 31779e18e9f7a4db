"""Egress rules: which URLs a tenant's requests may reach. Deny by default.

A rule names a scheme, a host (exact, or `*.example.com` for its subdomains) and a port
(the scheme's default when left out, `*` for any). Deny rules win over allow rules. An
allow rule for an IP literal may carry the private flag: only then may a request reach
that exact address although it is loopback, private, link-local or a cloud metadata
address (the SSRF guard, `addresses.py`, refuses them otherwise).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.errors import InvalidInput
from . import addresses

DEFAULT_PORTS = {"http": 80, "https": 443}
ANY_PORT = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: from its URL, normalised."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Target:
        """InvalidInput unless `url` is an absolute http(s) URL with a host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidInput(f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise InvalidInput(f"only http and https URLs may be fetched, not {scheme!r}")
        if not parts.hostname:
            raise InvalidInput(f"the URL {url!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise InvalidInput("URLs with credentials are not fetched: use a secret in a "
                               "header instead")
        return cls(scheme, normal_host(parts.hostname), port or DEFAULT_PORTS[scheme])

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address, when it is a literal."""
        return ip_literal(self.host)

    def __str__(self) -> str:
        return f"{self.scheme}://{_bracketed(self.host)}:{self.port}"


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _bracketed(host: str) -> str:
    """A host as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def normal_host(host: str) -> str:
    """Lower-case, IDNA for non-ASCII names, IPv6 without brackets."""
    host = host.strip("[]").lower()
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise InvalidInput(f"{host!r} is not a valid host name") from None


@dataclass(frozen=True, slots=True)
class EgressRule:
    allow: bool
    scheme: str
    host: str
    """Lower-case; `*.example.com` matches every subdomain of example.com (not itself)."""

    port: int | None
    """None: any port."""

    private: bool = False
    """An allow rule for an IP literal that may reach it although it is not public."""

    @classmethod
    def parse(cls, text: str, *, allow: bool, private: bool = False) -> EgressRule:
        """A rule from `SCHEME://HOST[:PORT]`; InvalidInput saying how to write one."""
        raw = text.strip()
        any_port = raw.endswith(":*")
        try:
            parts = urlsplit(raw[:-2] if any_port else raw)
            port = parts.port
        except ValueError as exc:
            raise InvalidInput(f"egress rule {text!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise InvalidInput(f"egress rule {text!r} must look like https://api.example.com, "
                               "https://*.example.com or http://10.0.0.5:8080 (a port of * "
                               "for any)")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise InvalidInput(f"egress rule {text!r} names a scheme, a host and a port only "
                               "(no path, query or credentials)")
        host = normal_host(parts.hostname)
        if "*" in host and not (host.startswith("*.") and "*" not in host[2:]):
            raise InvalidInput(f"egress rule {text!r}: a wildcard may only be a leading `*.`")
        rule = cls(allow, scheme, host, None if any_port else (port or DEFAULT_PORTS[scheme]),
                   private)
        if private and (not allow or ip_literal(rule.host) is None):
            raise InvalidInput(f"egress rule {text!r}: only an allow rule for an exact IP "
                               "address may be private")
        return rule

    def matches(self, target: Target) -> bool:
        if target.scheme != self.scheme or (self.port is not None and target.port != self.port):
            return False
        if self.host.startswith("*."):
            return target.host.endswith(self.host[1:])
        return target.host == self.host

    def exempts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                port: int) -> bool:
        """Whether this rule lets a request reach `address` although it is not public."""
        return (self.allow and self.private and ip_literal(self.host) == address
                and (self.port is None or self.port == port))

    def __str__(self) -> str:
        port = "*" if self.port is None else str(self.port)
        return f"{self.scheme}://{_bracketed(self.host)}:{port}"

    def stored(self) -> str:
        """One line that `from_stored` reads back."""
        return " ".join(["allow" if self.allow else "deny", str(self),
                         *(["private"] if self.private else [])])

    def check_reachable(self) -> None:
        """InvalidInput if this allow rule names a non-public address without the private
        flag: the SSRF guard would refuse every request it allows (a rule that looks like
        it works and never does)."""
        address = ip_literal(self.host)
        why = addresses.refusal(address) if address is not None else None
        if self.allow and not self.private and why is not None:
            raise InvalidInput(f"egress rule {self}: {self.host} is {why}, which the SSRF "
                               "guard refuses unless the rule allows exactly it as private "
                               "(add --private, or \"private\": true)")

    def same_target(self, other: EgressRule) -> bool:
        return (self.allow, self.scheme, self.host, self.port) == (
            other.allow, other.scheme, other.host, other.port)

    @classmethod
    def from_stored(cls, line: str) -> EgressRule:
        action, text, *flags = line.split()
        return cls.parse(text, allow=action == "allow", private="private" in flags)


def refusal(rules: list[EgressRule], target: Target) -> str | None:
    """Why the rules refuse `target` (a deny rule, or no allow rule); None if they allow it."""
    for rule in rules:
        if not rule.allow and rule.matches(target):
            return f"{target} matches the deny rule {rule}"
    if any(rule.allow and rule.matches(target) for rule in rules):
        return None
    # The hint is the exact command that allows it: the port, and --private for an
    # address that is not public (the SSRF guard refuses those otherwise).
    private = target.address is not None and addresses.refusal(target.address) is not None
    return (f"no egress rule allows {target} (egress is denied unless an operator allows it: "
            f"dwf tenant egress TENANT --allow {target}{' --private' if private else ''})")
