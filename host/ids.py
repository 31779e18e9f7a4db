"""Identifier types and their validation."""

from __future__ import annotations

import re
import uuid
from typing import NewType

from .errors import InvalidInput

TenantId = NewType("TenantId", str)
InstanceId = NewType("InstanceId", str)
ModuleSha = NewType("ModuleSha", str)

_INSTANCE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")
_TENANT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def tenant_id(value: str) -> TenantId:
    if not _TENANT_ID.fullmatch(value):
        raise InvalidInput(f"invalid tenant id {value!r}: use 1-64 characters of "
                           "[A-Za-z0-9_.-], starting with a letter, digit or underscore")
    return TenantId(value)


def instance_id(value: str) -> InstanceId:
    if not _INSTANCE_ID.fullmatch(value):
        raise InvalidInput(f"invalid instance id {value!r}: use 1-100 characters of "
                           "[A-Za-z0-9_-], not starting with '-'")
    return InstanceId(value)


def new_instance_id() -> InstanceId:
    return InstanceId(uuid.uuid4().hex)
