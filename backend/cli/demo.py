"""`escrow demo`: the whole story of one escrow against the running service."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.common import JsonFlag, app, console, echo_json, get_settings


@app.command("demo")
def demo_cmd(
    api: Annotated[
        str | None,
        typer.Option("--api", help="The running service (default: ESCROW_API_URL)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Tell the whole story of a hosting SLA against the running service (`escrow up`) through
    its REST API, on the local chain 31337: milestones, a rated review with a photo, KPI
    breaches, a rejected challenge, withdrawals and a consistent audit."""
    from backend.client import ServiceClient
    from backend.escrows.demo import CHAPTERS, ConsoleNarrator, render_closing, run_demo
    from backend.escrows.scripted import Stage, operator_token_issuer

    settings = get_settings()
    url = api or settings.api_url
    with ServiceClient(url) as client:
        stage = Stage.open(client)
        issue = operator_token_issuer(settings, stage.w3, str(stage.config["contract"]),
                                      int(stage.config["deployment_block"]))
        if as_json:
            result = run_demo(stage, issue)
        else:
            console.print(f"the story of one escrow, told to the service at {client.base_url}",
                          soft_wrap=True)
            with ConsoleNarrator(console, len(CHAPTERS)) as narrator:
                result = run_demo(stage, issue, narrator)
    if as_json:
        echo_json(result)
        return
    render_closing(result, console)
