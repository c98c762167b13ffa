"""The workers, each as its own process: `escrow index`, `escrow relay`, `escrow oracle`,
`escrow webhooks`.

Each runs under its lease (`backend/outbox/owner.py`): started while another process holds it,
it waits as standby (logging "standby: another <worker> is active") and takes over within about
`ESCROW_LEASE_POLL_INTERVAL` seconds of the holder's death; `--no-standby` refuses instead
(`sender_busy` / `worker_busy`, exit 2). `--once` never waits: it refuses when another instance is
active. SIGINT and SIGTERM stop a worker after the step under way (a second one exits at once)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backend.cli.common import JsonFlag, app, console, echo_json, get_settings

if TYPE_CHECKING:
    from backend.services import Services

OnceFlag = Annotated[bool, typer.Option("--once", help="One pass until idle, then exit.")]
StandbyFlag = Annotated[
    bool,
    typer.Option(
        "--standby/--no-standby",
        help="Wait as standby while another instance is active (default), or refuse at once.",
    ),
]


def _services(standby: bool) -> Services:
    """The services for a worker process, standing by or not (`worker_standby`)."""
    from backend.services import build_services

    return build_services(get_settings().model_copy(update={"worker_standby": standby}))


def _announce(as_json: bool, text: str, **document: Any) -> None:
    if as_json:
        echo_json(document)
    else:
        console.print(text, soft_wrap=True)


def run_until_signalled(body: Callable[[threading.Event], None]) -> None:
    """Runs `body(stop)` in a thread until it returns; SIGINT and SIGTERM set `stop` (a second
    signal exits at once). An error of the body is raised here (a `QualityEscrowError` is the
    command's one-line refusal)."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            body(stop)
        except BaseException as exc:  # handed to the main thread
            failed.append(exc)

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    worker = threading.Thread(target=run, name="worker", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise failed[0]
    if stop.is_set():
        console.print("stopped")


@app.command("index")
def index_cmd(
    once: Annotated[bool, typer.Option("--once", help="Sync to the head, then exit.")] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Forget the index (after a chain reset), then sync.")
    ] = False,
    standby: StandbyFlag = True,
    as_json: JsonFlag = False,
) -> None:
    """Follow the contract's events into the database (Ctrl-C stops)."""
    from backend.index.indexer import clear_index, index_once, run_indexer
    from backend.notify.events import webhook_listener
    from backend.outbox.owner import worker_lease

    services = _services(standby and not once)
    if not once:
        _announce(
            as_json,
            f"indexer of {services.escrow.address} on chain {services.chain_id}; Ctrl-C stops",
            worker="indexer", contract=services.escrow.address, chain_id=services.chain_id,
        )

    def body(stop: threading.Event) -> None:
        with worker_lease(services, "indexer", stop) as lease:
            if lease.is_set():
                return
            if reset:
                console.print(f"forgot {clear_index(services)} indexed events")
            if once:
                stored = index_once(services, listeners=[webhook_listener])
                _announce(as_json, f"stored {stored} events", stored=stored)
                return
            run_indexer(
                services,
                poll_interval=services.settings.index_poll_interval,
                stop=lease,
                listeners=[webhook_listener],
            )

    try:
        if once:
            body(threading.Event())
        else:
            run_until_signalled(body)
    finally:
        services.engine.dispose()


def _sender_cmd(name: str, once: bool, standby: bool, as_json: bool) -> None:
    """`escrow relay` and `escrow oracle`: the sender `name` of `backend.workers.SENDERS`."""
    from backend.outbox.owner import ownership
    from backend.workers import SENDERS

    services = _services(standby and not once)
    try:
        sender = SENDERS[name](services)
        if once:
            with ownership(services, name, sender.address):
                report = sender.run_until_idle()
            _announce(as_json, str(report), **asdict(report))
            return
        _announce(
            as_json,
            f"{name} {sender.address} on chain {services.chain_id}; Ctrl-C stops",
            worker=name, address=sender.address, chain_id=services.chain_id,
        )
        run_until_signalled(sender.run_forever)
    finally:
        services.engine.dispose()


@app.command("relay")
def relay_cmd(once: OnceFlag = False, standby: StandbyFlag = True, as_json: JsonFlag = False
              ) -> None:
    """Run the confirmation relayer: send each accepted confirmation's confirmWithSig once."""
    _sender_cmd("relayer", once, standby, as_json)


@app.command("oracle")
def oracle_cmd(once: OnceFlag = False, standby: StandbyFlag = True, as_json: JsonFlag = False
               ) -> None:
    """Run the KPI oracle: evaluate samples, report breaches with evidence, finalize them."""
    _sender_cmd("oracle", once, standby, as_json)


@app.command("webhooks")
def webhooks_cmd(
    once: Annotated[
        bool, typer.Option("--once", help="Send the deliveries due now, then exit.")
    ] = False,
    standby: StandbyFlag = True,
    as_json: JsonFlag = False,
) -> None:
    """Run the webhook dispatcher: deliver events to subscribers, retrying failures."""
    import httpx

    from backend.notify.dispatch import dispatch_due
    from backend.outbox.owner import worker_lease
    from backend.workers import run_webhooks_worker

    services = _services(standby and not once)
    try:
        if once:
            with (
                worker_lease(services, "webhooks"),
                httpx.Client(follow_redirects=False, trust_env=False) as client,
            ):
                tried = dispatch_due(
                    services, now=services.clock.service_time(), http_client=client
                )
            _announce(as_json, f"tried {tried} deliveries", tried=tried)
            return
        _announce(
            as_json,
            f"webhook dispatcher of {services.escrow.address} on chain {services.chain_id}; "
            "Ctrl-C stops",
            worker="webhooks", contract=services.escrow.address, chain_id=services.chain_id,
        )
        run_until_signalled(lambda stop: run_webhooks_worker(services, stop))
    finally:
        services.engine.dispose()
