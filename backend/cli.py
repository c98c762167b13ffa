"""The `escrow` command line (`docs/interface.md`, CLI)."""

from __future__ import annotations

import csv
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from backend.config import get_settings
from backend.errors import MalformedInputError, NotFoundError, QualityEscrowError

if TYPE_CHECKING:
    from backend.services import Services

#: exit status of a refused command (an unknown escrow, a malformed file, a node that is down)
EXIT_REFUSED = 2


class _ReportingGroup(TyperGroup):
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
    cls=_ReportingGroup,
    help="Quality Escrow: escrowed payments released by quality ratings and KPI evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command("compile")
def compile_cmd(
    check: Annotated[
        bool, typer.Option("--check", help="Only verify the committed artifacts are fresh.")
    ] = False,
) -> None:
    """Compile contracts_sol/ into contracts_sol/build/ (works offline through solc-js)."""
    from backend.chain.artifacts import load_artifact
    from backend.chain.codegen import render_revert_types, write_revert_types
    from backend.chain.compiler import check_artifacts_fresh, compile_contracts, resolve_solc
    from backend.paths import REPO_ROOT

    choice = resolve_solc()
    console.print(f"compiler: solc {choice.version} via {choice.source} ({choice.path})")
    revert_types = REPO_ROOT / "backend" / "chain" / "revert_types.py"
    if check:
        stale = check_artifacts_fresh()
        abi = load_artifact("QualityEscrow").abi
        if revert_types.read_text() != render_revert_types(abi):
            stale.append(str(revert_types.relative_to(REPO_ROOT)))
        if stale:
            console.print(f"[red]stale: {', '.join(stale)}[/red] (run `escrow compile`)")
            raise typer.Exit(1)
        console.print("[green]artifacts are fresh[/green]")
        return
    result = compile_contracts()
    load_artifact.cache_clear()
    changed = write_revert_types(load_artifact("QualityEscrow").abi, revert_types)
    console.print(f"wrote {len(result.artifacts)} artifacts to contracts_sol/build/")
    if changed:
        console.print("regenerated backend/chain/revert_types.py")


@app.command("chain")
def chain_cmd(
    port: Annotated[int, typer.Option(help="Port of the Hardhat node.")] = 8545,
) -> None:
    """Start the local Hardhat node (chain id 31337) and wait until it answers; Ctrl-C stops it."""
    import time

    from backend.chain.node import start_hardhat_node

    with start_hardhat_node(port) as node:
        console.print(f"Hardhat node answering at {node.url} (chain id 31337); Ctrl-C to stop")
        try:
            while node.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")


@app.command("deploy")
def deploy_cmd(as_json: JsonFlag = False) -> None:
    """Deploy QualityEscrow to ESCROW_RPC_URL and write the deployment record serve reads."""
    from backend.chain.connect import connect
    from backend.chain.deploy import deploy_escrow, write_deployment
    from backend.chain.keys import deployer_account

    settings = get_settings()
    w3 = connect(settings.rpc_url)
    deployment = deploy_escrow(w3, deployer_account(w3, settings))
    path = write_deployment(settings.data_dir, deployment)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "address": deployment.address,
                    "chain_id": deployment.chain_id,
                    "block": deployment.block,
                    "tx_hash": deployment.tx_hash,
                }
            )
        )
    else:
        console.print(
            f"QualityEscrow deployed at {deployment.address} on chain {deployment.chain_id} "
            f"(block {deployment.block}); record: {path}"
        )


@app.command("index")
def index_cmd(
    once: Annotated[bool, typer.Option("--once", help="Sync to the head, then exit.")] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Forget the index (after a chain reset), then sync.")
    ] = False,
) -> None:
    """Follow the contract's events into the database (Ctrl-C stops)."""
    from backend.index.indexer import clear_index, index_once, run_indexer
    from backend.notify.events import webhook_listener
    from backend.services import build_services

    services = build_services(get_settings())
    if reset:
        console.print(f"forgot {clear_index(services)} indexed events")
    if once:
        stored = index_once(services, listeners=[webhook_listener])
        console.print(f"stored {stored} events")
        return
    console.print(f"indexing {services.escrow.address} on chain {services.chain_id}; Ctrl-C stops")
    try:
        run_indexer(
            services,
            poll_interval=services.settings.index_poll_interval,
            listeners=[webhook_listener],
        )
    except KeyboardInterrupt:
        console.print("stopped")


@app.command("oracle")
def oracle_cmd(
    once: Annotated[bool, typer.Option("--once", help="One pass until idle, then exit.")] = False,
) -> None:
    """Run the KPI oracle: evaluate samples, report breaches with evidence, finalize them."""
    import threading

    from backend.chain.keys import oracle_account
    from backend.oracle.findings import evaluator
    from backend.oracle.worker import Oracle
    from backend.services import build_services

    services = build_services(get_settings())
    account = oracle_account(services.w3, services.settings)
    oracle = Oracle(services, account, evaluate=evaluator(services, account.address))
    if once:
        console.print(str(oracle.run_until_idle()))
        return
    console.print(f"oracle {account.address} on chain {services.chain_id}; Ctrl-C stops")
    try:
        oracle.run_forever(threading.Event())
    except KeyboardInterrupt:
        console.print("stopped")


tokens_app = typer.Typer(help="Bearer tokens that may post KPI samples for one escrow.")
measurements_app = typer.Typer(help="KPI samples.")
app.add_typer(tokens_app, name="tokens")
app.add_typer(measurements_app, name="measurements")


@tokens_app.command("issue")
def tokens_issue_cmd(
    escrow_id: int,
    label: Annotated[str | None, typer.Option(help="A note to tell tokens apart.")] = None,
) -> None:
    """Issue a token for ESCROW_ID; it is printed once, only its hash is stored."""
    from backend.oracle.cli import issue_token_command

    typer.echo(issue_token_command(get_settings(), escrow_id, label=label))


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
                mark = _check_mark(check.ok)
                console.print(f"  {check.name:<11} {mark}  {check.detail}")
        for check in report.contract_checks:
            mark = _check_mark(check.ok)
            console.print(f"contract {check.name:<11} {mark}  {check.detail}")
        verdict = "[green]consistent[/green]" if report.consistent else "[red]INCONSISTENT[/red]"
        console.print(f"history at block {report.block}: {verdict}")
    if not report.consistent:
        raise typer.Exit(1)


def _check_mark(ok: bool | None) -> str:
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
) -> None:
    """Every money movement of ACCOUNT over all its escrows, as CSV for bookkeeping (exit 2 for
    an account no indexed escrow names, a malformed day or --from after --to). The same CSV as
    GET /api/accounts/{address}/ledger.csv."""
    from backend.chain.tokens import TokenMetadata
    from backend.escrows.ledger_export import account_ledger, ledger_csv, parse_days
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
    sys.stdout.write(ledger_csv(rows))


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Run indexer, relayer, webhooks too.")
    ] = True,
) -> None:
    """Serve the API (OpenAPI at /docs) with the background workers."""
    _serve(host, port, workers)


def _serve(host: str, port: int, with_workers: bool, *, w3: Any = None) -> None:
    import uvicorn

    from backend.api.app import create_app
    from backend.services import build_services
    from backend.workers import start_workers

    services = build_services(get_settings(), w3=w3)
    _print_archived(services)
    running = start_workers(services) if with_workers else None
    console.print(
        f"API on http://{host}:{port} (docs at /docs), contract {services.escrow.address} "
        f"on chain {services.chain_id}" + (", with workers" if running else "")
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit lets the
    # workers stop and a Hardhat node started by `escrow up` go down with us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(create_app(services), host=host, port=port, log_level="info")
    finally:
        if running is not None:
            running.shutdown()


def _print_archived(services: Services) -> None:
    """Names the deployments of this chain whose data the database keeps aside."""
    from backend.db.deployments import ARCHIVED, list_deployments

    with services.sessions() as session:
        archived = [
            d for d in list_deployments(session, services.chain_id) if d.status == ARCHIVED
        ]
    just_now = {d.id for d in services.archived}
    for d in archived:
        rows = sum(d.archived_rows.values())
        when = "now" if d.id in just_now else _local_time(d.archived_at)
        console.print(
            f"archived {when}: deployment {d.id}, contract {d.contract} (block "
            f"{d.block_number}), {rows} rows kept aside; {d.archived_reason}",
            soft_wrap=True,
        )
    if archived:
        console.print("list them with `escrow deployments`", soft_wrap=True)


def _local_time(ts: int | None) -> str:
    """A unix time in the reader's time zone, to the second."""
    import datetime

    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


@app.command("up")
def up_cmd(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """The local stack: a Hardhat node if none answers, deploy if needed, API and workers."""
    import contextlib

    from backend.chain.connect import connect
    from backend.chain.deploy import deploy_escrow, is_deployed, read_deployment, write_deployment
    from backend.chain.errors import DeploymentMissing
    from backend.chain.keys import deployer_account
    from backend.chain.node import start_hardhat_node

    settings = get_settings()
    with contextlib.ExitStack() as stack:
        w3 = connect(settings.rpc_url)
        if not w3.is_connected():
            local_port = int(settings.rpc_url.rsplit(":", 1)[1].split("/")[0])
            console.print(f"starting a Hardhat node on port {local_port}")
            node = stack.enter_context(start_hardhat_node(local_port))
            w3 = connect(node.url)
        chain_id = int(w3.eth.chain_id)
        try:
            deployment = read_deployment(settings.data_dir, chain_id)
            if not is_deployed(w3, deployment):
                raise DeploymentMissing(chain_id, "(code gone: the chain was reset)")
        except DeploymentMissing:
            deployment = deploy_escrow(w3, deployer_account(w3, settings))
            write_deployment(settings.data_dir, deployment)
            console.print(f"deployed QualityEscrow at {deployment.address}")
        # a new deployment on a reset chain: `build_services` archives the old one's data
        _serve(host, port, True, w3=w3)


deployments_app = typer.Typer(
    help="Deployments the database served: the active one per chain, and the archived ones.",
    invoke_without_command=True,
)
app.add_typer(deployments_app, name="deployments")


@deployments_app.callback()
def deployments_cmd(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List every deployment the database knows, newest first, with the rows archived."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from backend.db.deployments import list_deployments
    from backend.db.session import make_engine, migrate, session_factory

    engine = make_engine(get_settings().resolved_database_url)
    try:
        migrate(engine)
        with session_factory(engine)() as session:
            found = list_deployments(session)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps([d.to_json() for d in found], indent=2))
        return
    if not found:
        console.print("no deployment served yet")
        return
    table = Table("id", "chain", "contract", "block", "status", "since", "rows archived", "why")
    for d in found:
        table.add_row(
            str(d.id), str(d.chain_id), d.contract, str(d.block_number), d.status,
            _local_time(d.archived_at if d.archived_at is not None else d.created_at),
            str(sum(d.archived_rows.values())) if d.status != "active" else "",
            d.archived_reason or "",
        )
    console.print(table)


@deployments_app.command("archive")
def deployments_archive_cmd(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: set the data aside.")] = False,
    chain_id: Annotated[
        int | None, typer.Option(help="The chain (default: the node at ESCROW_RPC_URL).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set the active deployment's data of a chain aside (archived, not deleted), so the next
    start serves another contract on that chain."""
    from backend.chain.clock import service_time
    from backend.chain.connect import connect
    from backend.db.deployments import archive_active
    from backend.db.session import make_engine, migrate, session_factory

    settings = get_settings()
    chain = chain_id if chain_id is not None else int(connect(settings.rpc_url).eth.chain_id)
    if not yes:
        raise QualityEscrowError(
            f"archiving sets every row of chain {chain} aside; add --yes to confirm"
        )
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
        record = archive_active(
            session_factory(engine), chain, "archived on the operator's request",
            now=service_time(),
        )
    finally:
        engine.dispose()
    if record is None:
        raise NotFoundError("active deployment", f"on chain {chain}")
    if as_json:
        typer.echo(json.dumps({"id": record.id, "archived_rows": record.archived_rows}))
        return
    rows = sum((record.archived_rows or {}).values())
    console.print(
        f"deployment {record.id} (contract {record.contract} on chain {chain}) archived: "
        f"{rows} rows kept aside", soft_wrap=True,
    )


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


if __name__ == "__main__":  # pragma: no cover
    app()
