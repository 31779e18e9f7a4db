"""Test guests per SDK: the same workflows written with the C SDK (tests/guests/*.c)
and the TypeScript SDK (tests/guests/js/*.ts), built by `make guests`."""

from __future__ import annotations

from pathlib import Path

from conftest import BUILD

SDKS = ("c", "ts")


def sdk_guest_path(sdk: str, name: str) -> Path:
    return BUILD / "guests" / ("js" if sdk == "ts" else "") / f"{name}.wasm"


def sdk_guest(sdk: str, name: str) -> bytes:
    return sdk_guest_path(sdk, name).read_bytes()


def first_line(message: str) -> str:
    """An error message without the stack trace a TypeScript guest appends to it."""
    return message.split("\n", 1)[0]
