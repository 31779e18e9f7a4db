"""What every `dwf` command shares: the `cli` group, its context, errors, output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..core import codec
from ..core.errors import DwfError, InvalidInput
from ..core.ids import TenantId, tenant_id
from ..store import is_postgres_url

if TYPE_CHECKING:  # imported when a command needs it: `dwf --help` must start fast
    from ..durable.engine import DurableEngine
    from ..durable.instances import InstanceStore

T = TypeVar("T")
DEFAULT_DB = "./dwf.sqlite3"
EXIT_FAILED = 1  # an error we explain; click uses 2 for usage errors
LOGGING_COMMANDS = {"worker", "serve"}
"""Long-running commands, which log at info by default (the others: warnings and errors)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Context:
    def __init__(self, db: str, module_source: str | Path | None = None,
                 module_check_interval_s: float | None = None) -> None:
        self.db: str | Path = db if is_postgres_url(db) else Path(db)
        self.module_source = module_source
        self.module_check_interval_s = module_check_interval_s

    def global_args(self) -> list[str]:
        """This process's engine options as `dwf` options, for the processes it starts."""
        args: list[str] = []
        if self.module_source is not None:
            kind = "--modules-dir" if isinstance(self.module_source, Path) else "--modules-url"
            args += [kind, str(self.module_source)]
        if self.module_check_interval_s is not None:
            args += ["--modules-check-interval", str(self.module_check_interval_s)]
        return args

    def engine_options(self) -> dict[str, Any]:
        """What every engine this process opens is given (on-demand module loading)."""
        options: dict[str, Any] = {"module_source": self.module_source}
        if self.module_check_interval_s is not None:
            options["module_check_interval_s"] = self.module_check_interval_s
        return options

    def run(self, body: Callable[[DurableEngine], Awaitable[T]]) -> T:
        """Run `body` on the whole engine (sandbox, registry, egress) on the database."""
        from .. import eventloop
        from ..durable.engine import DurableEngine

        async def main() -> T:
            engine = await DurableEngine.open(self.db, **self.engine_options())
            try:
                return await body(engine)
            finally:
                await engine.close()
        return eventloop.run(main())

    def run_on_instances(self, body: Callable[[InstanceStore], Awaitable[T]]) -> T:
        """Run `body` on the database's instances alone: no sandbox, no engine, so a
        command that only reads or steers instances starts in a fraction of the time."""
        from .. import eventloop
        from ..core.clock import SystemClock
        from ..durable.instances import InstanceStore
        from ..store import open_storage

        async def main() -> T:
            store = await open_storage(self.db, SystemClock())
            try:
                return await body(InstanceStore(store))
            finally:
                await store.close()
        return eventloop.run(main())


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON.")(fn)


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one clear line (or JSON) and a non-zero exit, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DwfError as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps({"error": {"code": exc.code.value, "message": str(exc)}}))
            else:
                click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    return wrapper


def instance_arguments(fn: Callable[..., Any]) -> Callable[..., Any]:
    """TENANT ID arguments, --json, the context and error reporting: the instance commands."""
    for decorate in (reports_errors, click.pass_obj, json_option,
                     click.argument("instance_id", metavar="ID"),
                     click.argument("tenant_name", metavar="TENANT")):
        fn = decorate(fn)
    return fn


def parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return codec.parse_json(text, what)
    except codec.CodecError as exc:
        raise InvalidInput(str(exc)) from None


def ms(value: int | None) -> str:
    if value is None:
        return "-"
    try:  # exact: a float of 9999-12-31T23:59:59.999 in seconds would show .998
        return (_EPOCH + timedelta(milliseconds=value)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except OverflowError:  # past year 9999 (stored by an older host)
        return f"{value} ms"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def emit(as_json: bool, data: Any, human: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else human())


@click.group()
@click.option("--db", envvar="DWF_DB", default=DEFAULT_DB, show_default=True,
              help="A SQLite database file (compiled modules are cached beside it), or a "
                   "postgresql://USER:PASSWORD@HOST:PORT/DB URL shared by any number of "
                   "workers (env DWF_DB).")
@click.option("--log-level", default=None,
              help="debug, info, warning or error (env DWF_LOG_LEVEL; default: info for "
                   "worker and serve, warning for the other commands).")
@click.option("--modules-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="DWF_MODULES_DIR", default=None,
              help="Load tenants' modules on demand from DIR/<tenant>.wasm (env "
                   "DWF_MODULES_DIR).")
@click.option("--modules-url", envvar="DWF_MODULES_URL", default=None, metavar="TEMPLATE",
              help="Load tenants' modules on demand from an http(s) URL with {tenant}, e.g. "
                   "https://code.example.com/{tenant}.wasm (env DWF_MODULES_URL).")
@click.option("--modules-check-interval", type=click.FloatRange(0), default=None,
              envvar="DWF_MODULES_CHECK_INTERVAL", metavar="SECONDS",
              help="Ask the module source whether a tenant's module changed at most this "
                   "often (default 5).")
@click.pass_context
def cli(ctx: click.Context, db: str, log_level: str | None, modules_dir: Path | None,
        modules_url: str | None, modules_check_interval: float | None) -> None:
    """dynamic-workflows: durable, sandboxed tenant workflows in WebAssembly."""
    from .. import logs

    # A one-shot command's stderr is for what went wrong; a server's log tells its story.
    logs.configure(log_level, default="info" if ctx.invoked_subcommand in LOGGING_COMMANDS
                   else "warning")
    if modules_dir is not None and modules_url is not None:
        raise click.UsageError("give --modules-dir or --modules-url, not both")
    if modules_url is not None and (not modules_url.startswith(("http://", "https://"))
                                    or "{tenant}" not in modules_url):
        raise click.BadParameter("use an http(s) URL with {tenant} in it, e.g. "
                                 "https://code.example.com/{tenant}.wasm",
                                 param_hint="--modules-url")
    ctx.obj = Context(db, modules_dir or modules_url, modules_check_interval)


def parse_tenant(value: str) -> TenantId:
    try:
        return tenant_id(value)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc)) from None
