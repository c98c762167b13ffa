"""`escrow demo`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from backend.cli.common import JsonFlag, app, console, get_settings


@app.command("demo")
def demo_cmd(
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Use the in-process chain instead of Hardhat.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Scripted end-to-end flow on a local chain, printing every step."""
    from backend.escrows.demo import run_demo

    steps = run_demo(get_settings(), in_process=in_process, console=None if as_json else console)
    if as_json:
        typer.echo(json.dumps(steps, indent=2))
