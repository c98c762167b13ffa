"""The background workers: the indexer (with the webhook listener), the confirmation relayer, the
KPI oracle and the webhook dispatcher. `escrow serve` and `escrow up` run them in threads beside
the API (`start_workers`); `escrow index|relay|oracle|webhooks` run one each as its own process
(`run_worker`). Each runs under its lease (`backend/outbox/owner.py`): one active instance per
worker, the others on standby or refused. The two senders (relayer, oracle) run through the one
sender loop, `Sender.run_forever` (`backend/outbox/sender.py`), which takes the lease itself."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from backend.chain.keys import oracle_account, relayer_account
from backend.confirmations.relayer import Relayer
from backend.errors import QualityEscrowError
from backend.index.indexer import run_indexer
from backend.notify.dispatch import run_dispatcher
from backend.notify.events import webhook_listener
from backend.oracle.findings import evaluator
from backend.oracle.worker import Oracle
from backend.outbox.owner import ownership, worker_lease
from backend.outbox.sender import Sender
from backend.services import Services

logger = logging.getLogger(__name__)

WORKER_NAMES = ("indexer", "relayer", "oracle", "webhooks")


@dataclass
class Workers:
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)


def relayer(services: Services) -> Relayer:
    """The confirmation relayer, sending from the relayer key."""
    return Relayer(services, relayer_account(services.w3, services.settings))


def oracle(services: Services) -> Oracle:
    """The oracle: evaluates the stored samples, reports breaches and finalizes them."""
    account = oracle_account(services.w3, services.settings)
    return Oracle(services, account, evaluate=evaluator(services, account.address))


#: the senders by name (`Sender.name`), each built from the service's settings and keys
SENDERS: dict[str, Callable[[Services], Sender[Any]]] = {"relayer": relayer, "oracle": oracle}


def run_index_worker(services: Services, stop: threading.Event) -> None:
    """The indexer (feeding the webhook listener) under the "indexer" lease, until `stop`."""
    with worker_lease(services, "indexer", stop) as lease:
        run_indexer(
            services,
            poll_interval=services.settings.index_poll_interval,
            stop=lease,
            listeners=[webhook_listener],
        )


def run_webhooks_worker(services: Services, stop: threading.Event) -> None:
    """The webhook dispatcher under the "webhooks" lease, until `stop`."""
    with worker_lease(services, "webhooks", stop) as lease:
        run_dispatcher(services, lease)


def check_leases(
    services: Services, names: tuple[str, ...], senders: dict[str, Sender[Any]]
) -> None:
    """Takes and lets go of each worker's lease at once: raises `SenderBusyError` or
    `WorkerBusyError` (`backend/outbox/owner.py`) naming the first one another process holds,
    before anything starts."""
    for name in names:
        if name in senders:
            lease = ownership(services, name, senders[name].address, standby=False)
        elif name in SENDERS:
            continue  # not built (no key): nothing it could send
        else:
            lease = worker_lease(services, name, standby=False)
        with lease:
            pass


def run_worker(
    name: str, services: Services, stop: threading.Event, *, sender: Sender[Any] | None = None
) -> None:
    """Runs worker `name` (one of `WORKER_NAMES`) under its lease until `stop` is set; a sender
    may be handed in already built."""
    if name == "indexer":
        run_index_worker(services, stop)
    elif name == "webhooks":
        run_webhooks_worker(services, stop)
    else:
        (sender or SENDERS[name](services)).run_forever(stop)


def start_workers(services: Services, names: tuple[str, ...] = WORKER_NAMES) -> Workers:
    """Starts each named worker in a thread of its own (stopped by `Workers.shutdown`).

    Unless the settings say to stand by (`worker_standby`), first checks that no other process
    holds any of their leases: raises `SenderBusyError` / `WorkerBusyError` then, and starts
    nothing. Standing by, a worker whose lease is held waits for it in its thread."""
    senders: dict[str, Sender[Any]] = {}
    for name in names:
        # without its key a sender is not checked: its thread says so in the log, as it always did
        with suppress(QualityEscrowError):
            if name in SENDERS:
                senders[name] = SENDERS[name](services)
    if not services.settings.worker_standby:
        check_leases(services, names, senders)
    workers = Workers()
    for name in names:
        target = _guarded(name, partial(run_worker, name, services, workers.stop,
                                        sender=senders.get(name)))
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        workers.threads.append(thread)
    return workers


def _guarded(name: str, target: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            target()
        except Exception:
            logger.exception("worker %s stopped with an error", name)

    return run
