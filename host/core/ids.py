"""Identifier types and their validation."""

from __future__ import annotations

import itertools
import os
import re
import threading
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


class _Entropy:
    """Random bytes from the OS, drawn a page at a time: one getrandom call, which lets go of
    the GIL, for 256 ids rather than one each (the writer makes ids inside its commits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._at + count > len(self._pool):
                self._pool, self._at = os.urandom(4096), 0
            self._at += count
            return self._pool[self._at - count:self._at]


    def forget(self) -> None:
        """In a forked child: its parent may use the same bytes."""
        self._pool, self._at = b"", 0


_entropy = _Entropy()
_runs = itertools.count()
_RUN_PREFIX = os.urandom(8).hex()


def _after_fork() -> None:
    global _RUN_PREFIX
    _entropy.forget()
    _RUN_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_after_fork)


def new_instance_id() -> InstanceId:
    """32 hex digits of OS randomness (128 bits), like a uuid4 without its fixed bits."""
    return InstanceId(_entropy.take(16).hex())


def new_request_id() -> str:
    """16 hex digits of OS randomness, naming one HTTP request in logs and errors."""
    return _entropy.take(8).hex()


def new_run_id() -> str:
    """A claim's fence token: never the same twice, here or in another process (a random
    prefix per process, then a count)."""
    return f"{_RUN_PREFIX}{next(_runs):016x}"
