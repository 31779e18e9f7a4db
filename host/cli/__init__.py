"""`dwf`: the command line. JSON with --json, tables for people otherwise.

One module per group of commands; each registers its commands on the `cli` group.
"""

from __future__ import annotations

from . import (  # noqa: F401 - they register commands
    build,
    capabilities,
    instances,
    lifecycle,
    processes,
    schedules,
    tenants,
    tokens,
)
from .common import cli


def main() -> None:
    cli(prog_name="dwf")
