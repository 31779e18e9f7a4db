"""Per-tenant limits: defaults, and how a tenant's overrides are read."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """What one tenant's workflows may use. Every field can be set per tenant."""

    max_payload_bytes: int = 1 * MIB
    """Largest step result, workflow output, params or event payload (msgpack bytes)."""

    max_steps: int = 10_000
    """Journal positions (steps, sleeps, waits, creates, sends) per instance."""

    cpu_fuel: int = 10_000_000_000
    """Wasm fuel per invocation (about one unit per instruction): the CPU budget.

    The default is roughly one to three seconds of guest CPU on a current core."""

    invocation_timeout_ms: int = 60_000
    """Wall-clock budget of one invocation, host calls included."""

    memory_bytes: int = 64 * MIB
    """Largest linear memory the guest may grow to."""

    table_elements: int = 10_000
    """Largest table the guest may have."""

    max_concurrent_invocations: int = 2
    """Instances of this tenant a worker runs at once; the rest wait their turn, so one
    tenant cannot occupy every sandbox thread."""

    max_log_lines: int = 1000
    """`log` calls one invocation may make; later ones are dropped after one
    "log truncated" note. A replay re-runs the log calls between steps: it is a new
    invocation, with a new budget."""

    max_log_bytes: int = 256 * 1024
    """Bytes of log text one invocation may write (each message is also cut at 16 KiB);
    past it, as past `max_log_lines`."""

    egress_concurrent_requests: int = 4
    """Outbound requests (`http_fetch`) of this tenant in flight at once; more wait for a
    turn within their timeout."""

    egress_requests_per_minute: int = 600
    """Outbound requests this tenant may start per minute; past it a request fails with
    the retryable EgressFailed."""

    egress_response_bytes: int = 1 * MIB
    """Largest outbound response body (never more than `max_payload_bytes`, since it may
    become a step result): past it, PayloadTooLarge."""

    egress_timeout_ms: int = 30_000
    """An outbound request's timeout when the guest gives none (the step's own timeout and
    the invocation's budget still bound it)."""

    def with_overrides(self, overrides: dict[str, Any]) -> TenantLimits:
        known = {f.name for f in dataclasses.fields(self)}
        for key, value in overrides.items():
            if key not in known:
                raise InvalidInput(f"unknown limit {key!r}; known limits: "
                                   f"{', '.join(sorted(known))}")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidInput(f"limit {key!r} must be a positive integer, got {value!r}")
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


MAX_PARSED_LIMITS = 4096


class LimitsParser:
    """A tenant's limits from its stored overrides (a JSON object), parsed once per
    distinct text: every claim and every instance creation needs them."""

    def __init__(self, defaults: TenantLimits = TenantLimits()) -> None:
        self.defaults = defaults
        self._parsed: dict[str, TenantLimits] = {}

    def parse(self, raw: str | None) -> TenantLimits:
        """The limits for stored overrides `raw`; the defaults for None (no tenant row)."""
        if raw is None:
            return self.defaults
        limits = self._parsed.get(raw)
        if limits is None:
            if len(self._parsed) >= MAX_PARSED_LIMITS:
                self._parsed.clear()
            limits = self._parsed[raw] = self.defaults.with_overrides(json.loads(raw))
        return limits
