"""What every `escrow` command shares: the Typer app, the one place that turns the project's
errors into one line and exit status 2, the console (never wrapped when piped), `--json`,
`--version`, and times in the reader's zone."""

from __future__ import annotations

import datetime
import json
import sys
from importlib import metadata
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from backend import config
from backend.errors import QualityEscrowError

__all__ = [
    "EXIT_REFUSED", "JsonFlag", "app", "console", "echo_json", "get_settings", "local_time",
    "version",
]

#: exit status of a refused command (an unknown escrow, a malformed file, a node that is down)
EXIT_REFUSED = 2


class ReportingGroup(TyperGroup):
    """The one place that reports the project's errors: any `QualityEscrowError` a command
    raises is printed as one line, `error: <message>`, on stderr, with exit status 2. Any other
    exception is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click.Context
        try:
            return super().invoke(ctx)
        except QualityEscrowError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(EXIT_REFUSED) from None


app = typer.Typer(
    cls=ReportingGroup,
    help="Quality Escrow: escrowed payments released by quality ratings and KPI evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _console() -> Console:
    """A terminal gets rich's own width; a pipe or a file gets lines as long as they are (no
    wrapping in the middle of an address or an event field) and no colour codes."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=100_000, soft_wrap=True)


console = _console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def version() -> str:
    """The installed package's version (`pyproject.toml`)."""
    try:
        return metadata.version("quality-escrow")
    except metadata.PackageNotFoundError:  # pragma: no cover - a checkout run without install
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"escrow {version()}")
        raise typer.Exit(0)


#: the long-running commands (the service and its workers): they log INFO and above by default;
#: every other command WARNING and above unless ESCROW_LOG_LEVEL is set (`backend/logs.py`)
SERVICE_COMMANDS = frozenset({"serve", "up", "index", "relay", "oracle", "webhooks"})


@app.callback()
def main(
    ctx: typer.Context,
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    """Quality Escrow: escrowed payments released by quality ratings and KPI evidence."""
    from backend.logs import configure_logging

    quiet = ctx.invoked_subcommand not in SERVICE_COMMANDS
    try:
        settings: config.Settings | None = get_settings()
    except Exception:  # the command reads the settings again and says what is wrong there
        settings = None
    configure_logging(settings, quiet=quiet)  # idempotent: every invocation in one process


def get_settings() -> config.Settings:
    """The configuration of `backend/config.py`, read afresh by each command (tests replace
    `backend.config.get_settings`)."""
    return config.get_settings()


def echo_json(value: Any) -> None:
    """One JSON document on stdout (what `--json` prints)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def local_time(ts: int | None) -> str:
    """A unix time in the reader's time zone, to the second."""
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
