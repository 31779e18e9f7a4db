"""The SSRF guard: addresses a tenant's request may not reach however its URL looks.

A name on the allow list can still resolve to the host's own loopback, a private network,
a link-local address or a cloud provider's metadata service (which hands out credentials).
Every address a request would connect to is checked after resolution; the connection then
goes to exactly the address that was checked, so a second, different DNS answer cannot
slip in between (DNS rebinding).
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA = frozenset(map(ipaddress.ip_address, [
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack...
    "169.254.170.2",    # AWS ECS task credentials
    "fd00:ec2::254",    # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
]))


def refusal(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is (to refuse it), or None if public."""
    embedded = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    if embedded is not None:
        return refusal(embedded)
    if address in METADATA:
        return "a cloud metadata address"
    for kind, found in (("a loopback", address.is_loopback),
                        ("a link-local", address.is_link_local),
                        ("a multicast", address.is_multicast),
                        ("an unspecified", address.is_unspecified),
                        ("a private", address.is_private),
                        ("a reserved", address.is_reserved)):
        if found:
            return f"{kind} address"
    if not address.is_global:
        return "a non-public address"
    return None
