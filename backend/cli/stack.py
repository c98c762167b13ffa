"""The service: `escrow serve`, `escrow up` and the deployments the database served."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backend.cli.common import JsonFlag, app, console, get_settings, local_time
from backend.errors import NotFoundError, QualityEscrowError

if TYPE_CHECKING:
    from backend.services import Services


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
    print_archived(services)
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


def print_archived(services: Services) -> None:
    """Names the deployments of this chain whose data the database keeps aside."""
    from backend.db.deployments import ARCHIVED, list_deployments

    with services.sessions() as session:
        archived = [
            d for d in list_deployments(session, services.chain_id) if d.status == ARCHIVED
        ]
    just_now = {d.id for d in services.archived}
    for d in archived:
        rows = sum(d.archived_rows.values())
        when = "now" if d.id in just_now else local_time(d.archived_at)
        console.print(
            f"archived {when}: deployment {d.id}, contract {d.contract} (block "
            f"{d.block_number}), {rows} rows kept aside; {d.archived_reason}",
            soft_wrap=True,
        )
    if archived:
        console.print("list them with `escrow deployments`", soft_wrap=True)


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
            local_time(d.archived_at if d.archived_at is not None else d.created_at),
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
