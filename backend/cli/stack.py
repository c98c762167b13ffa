"""The service: `escrow serve`, `escrow up` and the deployments the database served."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from backend.cli.common import JsonFlag, app, console, get_settings, local_time
from backend.errors import NotFoundError, QualityEscrowError

if TYPE_CHECKING:
    from contextlib import ExitStack

    from backend.config import Settings
    from backend.services import Services


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_workers: Annotated[
        bool,
        typer.Option(
            "--no-workers",
            help="Serve the API only; run the workers as their own processes "
            "(escrow index, relay, oracle, webhooks).",
        ),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            "--workers", min=1,
            help="API processes (uvicorn workers); more than 1 needs PostgreSQL.",
        ),
    ] = 1,
    standby: Annotated[
        bool | None,
        typer.Option(
            "--standby/--no-standby",
            help="Background workers whose lease another process holds wait as standby "
            "(default: refuse to start, unless ESCROW_WORKER_STANDBY).",
        ),
    ] = None,
) -> None:
    """Serve the API (OpenAPI at /docs) with the background workers."""
    _serve(host, port, not no_workers, processes=processes, standby=standby)


def _serve(
    host: str, port: int, with_workers: bool, *, w3: Any = None, processes: int = 1,
    standby: bool | None = None,
) -> None:
    """Serves the API on `processes` uvicorn processes (more than one: PostgreSQL only, each
    process builds its own services from the environment, `create_app_from_settings`), with the
    background workers in this process's threads when `with_workers` (their leases refused at
    once when held, or waited for with `standby`; default `ESCROW_WORKER_STANDBY`)."""
    import uvicorn

    from backend.api.app import create_app
    from backend.chain.connect import HARDHAT_CHAIN_ID, is_in_process
    from backend.chain.keys import check_service_keys
    from backend.errors import ConfigurationError
    from backend.logs import uvicorn_log_config
    from backend.notify.sign_in import check_domain_setting
    from backend.services import build_services
    from backend.workers import start_workers

    settings = get_settings()
    if standby is not None:
        settings = settings.model_copy(update={"worker_standby": standby})
    if processes > 1 and settings.resolved_database_url.startswith("sqlite"):
        raise ConfigurationError(
            f"--workers {processes} needs PostgreSQL (ESCROW_DATABASE_URL): SQLite has one "
            "writer at a time, so serve it from one process"
        )
    services = build_services(settings, w3=w3)  # migrates once, before any API process starts
    check_domain_setting(
        settings.siwe_domain, services.chain_id,
        dev_chain=services.chain_id == HARDHAT_CHAIN_ID or is_in_process(services.w3),
    )
    print_archived(services)
    if not with_workers:  # the workers load them themselves, refusing the same way
        check_service_keys(services.w3, settings)
    running = start_workers(services) if with_workers else None
    console.print(
        f"API on http://{host}:{port} (docs at /docs), contract {services.escrow.address} "
        f"on chain {services.chain_id}" + (", with workers" if running else "")
        + (f", {processes} processes" if processes > 1 else ""),
        soft_wrap=True,
    )
    # the capacity of each API process, set together (backend/api/admission.py)
    console.print(
        f"each API process serves {settings.api_concurrency} requests at once "
        f"(ESCROW_API_MAX_CONCURRENCY; more wait up to {settings.api_queue_timeout:g} s, then "
        f"503 overloaded) on {settings.db_pool_size} pooled connections and "
        f"{settings.api_threads} threads (ESCROW_DB_POOL_SIZE, ESCROW_API_THREADS)",
        soft_wrap=True,
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit lets the
    # workers stop and a Hardhat node started by `escrow up` go down with us (with several
    # processes uvicorn's supervisor handles SIGINT/SIGTERM, stops them and returns)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if processes > 1:
            uvicorn.run(
                "backend.api.app:create_app_from_settings", factory=True, workers=processes,
                host=host, port=port, log_config=uvicorn_log_config(settings),
            )
        else:
            uvicorn.run(create_app(services), host=host, port=port,
                        log_config=uvicorn_log_config(settings))
    finally:
        if running is not None:
            running.shutdown()
        if processes > 1:
            services.engine.dispose()


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
    seed: Annotated[
        bool,
        typer.Option("--seed/--no-seed",
                     help="On a first start of chain 31337, make a few demo escrows."),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """The local stack: a Hardhat node if none answers, deploy if needed, API, pages and
    workers. Prints the URLs, what to add to a wallet, the service's accounts and (chain 31337)
    the dev accounts with their keys; on a first start seeds demo escrows."""
    import contextlib

    from backend.escrows.local_stack import json_stdout

    try:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(json_stdout()) if as_json else None
            _up(stack, host, port, seed=seed, out=out)
    except KeyboardInterrupt:  # Ctrl-C: everything above has stopped (the node too)
        typer.echo("stopped", err=True)


def _up(stack: ExitStack, host: str, port: int, *, seed: bool, out: TextIO | None) -> None:
    """`escrow up` inside `stack` (it stops what was started, in reverse): node, deployment,
    the summary, the seeding thread, then the service until it stops. `out`: where `--json`
    writes its lines (None: people's output on the console)."""
    import threading

    from backend.chain.keys import check_service_keys
    from backend.escrows.local_stack import (
        first_start,
        local_arbiter,
        local_chain,
        local_summary,
        page_host,
        render_summary,
    )
    from backend.escrows.seed import Seeded, start_seeding

    settings = get_settings()
    chain = local_chain(settings, stack, console.print)
    w3 = chain.w3
    check_service_keys(w3, settings)  # a configured key that cannot be loaded: refused here
    arbiter, dev_default = local_arbiter(settings, int(w3.eth.chain_id), w3)
    if dev_default and arbiter is not None:
        settings = _offer_arbiter(arbiter)
    seeding = seed and first_start(w3, chain.deployment.address)
    summary = local_summary(
        settings, w3, chain.deployment, host=host, port=port, arbiter=arbiter,
        node_started=chain.node_started, deployed=chain.deployed, seeding=seeding,
    )
    lock = threading.Lock()

    def emit(value: dict[str, Any]) -> None:
        assert out is not None
        with lock:
            out.write(json.dumps(value) + "\n")
            out.flush()

    if out is not None:
        emit(summary)
    else:
        render_summary(summary, console)
    if seeding:
        def report(seeded: Seeded) -> None:
            if out is not None:
                emit({"seeded": seeded.to_json()})
            else:
                console.print(f"seeded demo escrow {seeded.escrow_id}: {seeded.state:<9} "
                              f"{seeded.url}  {seeded.title}", soft_wrap=True)

        def failed(message: str) -> None:
            typer.echo(f"warning: {message}", err=True)
            if out is not None:
                emit({"seeding_failed": message})

        running = start_seeding(settings, f"http://{page_host(host)}:{port}", chain.rpc_url,
                                report=report, failed=failed)
        stack.callback(running.shutdown)
    # a new deployment on a reset chain: `build_services` archives the old one's data
    _serve(host, port, True, w3=w3)


def _offer_arbiter(address: str) -> Settings:
    """Makes the dev arbiter the one `GET /api/config` offers for this run: the service reads
    its settings afresh (`get_settings`, `build_services` -> `services.settings` ->
    `backend/escrows/wallet_config.py`), so the variable is set and the cached settings
    dropped. Returns the settings read again."""
    import os

    from backend import config

    os.environ["ESCROW_DEFAULT_ARBITER"] = address
    clear = getattr(config.get_settings, "cache_clear", None)
    if clear is not None:
        clear()
    return get_settings()


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
