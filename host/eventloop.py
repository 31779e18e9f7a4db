"""The event loop every dwf process runs on: uvloop, a drop-in asyncio loop built on libuv.

A worker's loop hands each invocation to a guest thread and takes it back, answers every
group commit, and serves HTTP. Under load it is the busiest thread in the process, so its
own overhead sets the pace: 100 concurrent 10-step workflows ran about 25% faster on
uvloop than on asyncio's default loop on the 2-vCPU bench machine (`make bench`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on a uvloop loop."""
    return uvloop.run(main)
