"""The workers run alone: `escrow index`, `escrow oracle`."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.common import app, console, get_settings


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
