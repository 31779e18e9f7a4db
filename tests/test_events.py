"""Events and finished instances. Delivery, buffering and timeouts as a workflow sees them
are in the behaviour suite both SDKs pass: test_sdk_conformance.py."""

from __future__ import annotations

import pytest
from helpers import settle, start

from host import DurableEngine, InvalidState, TenantId


async def test_finished_instances_refuse_events(engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "echo", 1)
    await settle(engine, kit, instance)
    with pytest.raises(InvalidState, match="complete"):
        await engine.instances.send_event(kit, instance, "late", None)
