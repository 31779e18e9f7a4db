"""`dwf build`: a TypeScript (or JavaScript) tenant, anywhere on disk, into a module that
`dwf tenant register` takes.

The toolchain is this repository's guest_sdk/js: `make` builds the JavaScript engine once
(QuickJS-ng from its pinned sources, cached under build/js) and installs esbuild, Wizer and
tsc from npm (pinned by its lock file); guest_sdk/js/build.mjs type-checks the tenant,
bundles it with the SDK, links it with the engine and snapshots it. It needs node and npm
(20 or newer) and the development environment (`make setup`: the guest compiler).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from ..core.errors import InvalidInput
from .common import cli, reports_errors

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "guest_sdk" / "js"


class BuildFailed(InvalidInput):
    """The tenant did not build; the tool that refused said why, above this line."""


def _run(command: list[str], what: str) -> None:
    if subprocess.run(command, stdin=subprocess.DEVNULL).returncode != 0:
        raise BuildFailed(f"{what} failed (see above)")


@cli.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The module to write (e.g. build/mytenant.wasm).")
@click.option("--no-check", is_flag=True, help="Skip type-checking the sources with tsc.")
@reports_errors
def build(source: Path, out: Path, no_check: bool) -> None:
    """Build SOURCE (a .ts/.js file, or a directory of them) into a tenant module.

    Exported WorkflowEntrypoint classes are the module's workflows, named by their export
    names; a default export with fetch() is its fetch handler.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise InvalidInput("building a TypeScript tenant needs node and npm (20 or newer) on "
                           "PATH; install them (e.g. apt-get install nodejs npm) and try again")
    if not (JS_DIR / "build.mjs").exists():
        raise InvalidInput(f"dwf build needs the dynamic-workflows source tree ({JS_DIR} is "
                           "missing): run it from a checkout installed with `make setup`")
    _run(["make", "-s", "-C", str(ROOT), "js-engine", "js-tools", f"PYTHON={sys.executable}"],
         "building the JavaScript engine")
    with tempfile.TemporaryDirectory(prefix="dwf-build-") as work:
        _run(["node", str(JS_DIR / "build.mjs"), "--engine", str(ROOT / "build" / "js" / "engine"),
              "--python", sys.executable, "--work", work, "--out", str(out.resolve()),
              *([] if no_check else ["--check"]), str(source.resolve())],
             f"building {source}")
    click.echo(f"built {out}")
