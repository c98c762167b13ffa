"""Data commands: measurement tokens, KPI samples, the audit and the account ledger."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from backend.cli.common import JsonFlag, app, console, echo_json, get_settings
from backend.errors import MalformedInputError, NotFoundError

tokens_app = typer.Typer(help="Bearer tokens that may post KPI samples for one escrow.")
measurements_app = typer.Typer(help="KPI samples.")
app.add_typer(tokens_app, name="tokens")
app.add_typer(measurements_app, name="measurements")


@tokens_app.command("issue")
def tokens_issue_cmd(
    escrow_id: int,
    label: Annotated[str | None, typer.Option(help="A note to tell tokens apart.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a token for ESCROW_ID; it is printed once, only its hash is stored (`--json`:
    `{escrow_id, token, label}`)."""
    from backend.oracle.cli import issue_token_command

    token = issue_token_command(get_settings(), escrow_id, label=label)
    if as_json:
        echo_json({"escrow_id": escrow_id, "token": token, "label": label})
    else:
        typer.echo(token)


@tokens_app.command("revoke")
def tokens_revoke_cmd(
    escrow_id: Annotated[int | None, typer.Option("--escrow", help="Every token of it.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="This one token.")] = None,
) -> None:
    """Revoke every token of an escrow, or one token."""
    from backend.oracle.cli import revoke_command

    if (escrow_id is None) == (token is None):
        raise typer.BadParameter("give exactly one of --escrow or --token")
    count = revoke_command(get_settings(), escrow_id=escrow_id, token=token)
    console.print(f"revoked {count} live token(s)")


@measurements_app.command("import")
def measurements_import_cmd(
    path: Path,
    escrow_id: Annotated[int, typer.Option("--escrow", help="The escrow the samples are for.")],
    as_json: JsonFlag = False,
) -> None:
    """Import samples from a CSV with columns kpi,value,observed_at (all-or-nothing)."""
    from backend.oracle.cli import import_csv

    try:
        result = import_csv(get_settings(), escrow_id, path)
    except OSError as exc:  # missing or unreadable file
        raise MalformedInputError(f"CSV file {path}", exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise MalformedInputError(f"CSV file {path}", f"not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise MalformedInputError(f"CSV file {path}", str(exc)) from exc
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "escrow_id": result.escrow_id,
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                }
            )
        )
    else:
        console.print(
            f"escrow {result.escrow_id}: {result.accepted} samples stored, "
            f"{result.duplicates} duplicates ignored"
        )


@app.command("audit")
def audit_cmd(
    escrow_id: Annotated[int | None, typer.Argument(help="The escrow to audit.")] = None,
    all_escrows: Annotated[
        bool, typer.Option("--all", help="Every escrow, plus the contract's solvency per token.")
    ] = False,
    api: Annotated[
        str | None, typer.Option("--api", help="Check documents against this service's API.")
    ] = None,
    database: Annotated[
        bool, typer.Option("--database/--no-database", help="Check the local database too.")
    ] = True,
    as_json: JsonFlag = False,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown report here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
) -> None:
    """Verify the settlement history from the chain alone; exit 1 when anything is inconsistent,
    2 for an unknown escrow or a node that does not answer."""
    from rich.progress import Progress

    from backend.audit import render
    from backend.audit.cli import run_audit

    if (escrow_id is None) == (not all_escrows):
        raise typer.BadParameter("give an ESCROW_ID or --all")
    with Progress(console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("replaying the history", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = run_audit(get_settings(), escrow_id, api, database, progress)
    if markdown is not None:
        markdown.write_text(render.to_markdown(report), encoding="utf-8")
    if html is not None:
        html.write_text(render.to_html(report), encoding="utf-8")
    if as_json:
        typer.echo(render.to_json(report), nl=False)
    else:
        for esc in report.escrows:
            console.print(f"escrow {esc.escrow_id}: {esc.events} events")
            for check in esc.checks:
                mark = check_mark(check.ok)
                console.print(f"  {check.name:<11} {mark}  {check.detail}")
        for check in report.contract_checks:
            mark = check_mark(check.ok)
            console.print(f"contract {check.name:<11} {mark}  {check.detail}")
        verdict = "[green]consistent[/green]" if report.consistent else "[red]INCONSISTENT[/red]"
        console.print(f"history at block {report.block}: {verdict}")
    if not report.consistent:
        raise typer.Exit(1)


def check_mark(ok: bool | None) -> str:
    if ok is None:
        return "[yellow]not checked[/yellow]"
    return "[green]ok[/green]" if ok else "[red]FAILED[/red]"


@app.command("ledger")
def ledger_cmd(
    account: str,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day (UTC), YYYY-MM-DD.")
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day (UTC), YYYY-MM-DD.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every money movement of ACCOUNT over all its escrows, as CSV for bookkeeping (exit 2 for
    an account no indexed escrow names, a malformed day or --from after --to). The same CSV as
    GET /api/accounts/{address}/ledger.csv."""
    from backend.chain.tokens import TokenMetadata
    from backend.escrows.ledger_export import (
        account_ledger,
        ledger_csv,
        ledger_json,
        parse_days,
    )
    from backend.inputs import parse_address
    from backend.services import build_services

    address = parse_address("account", account)
    start, end = parse_days(date_from, date_to, ("--from", "--to"))
    services = build_services(get_settings())
    try:
        with services.sessions() as session:
            rows = account_ledger(session, services.chain_id, TokenMetadata(services.w3),
                                  address, start, end)
    except NotFoundError as exc:
        raise NotFoundError(
            exc.kind, f"{exc.key} (if the index is behind, run `escrow index --once`)"
        ) from None
    finally:
        services.engine.dispose()
    if as_json:
        echo_json(ledger_json(rows))
        return
    sys.stdout.write(ledger_csv(rows))
