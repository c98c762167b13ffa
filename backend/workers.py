"""The background workers `escrow serve` and `escrow up` run beside the API: the indexer (with
the webhook listener), the confirmation relayer, the KPI oracle and the webhook dispatcher, each
in a thread that stops when the shared event is set. The two senders (relayer, oracle) run
through the one sender loop, `Sender.run_forever` (`backend/outbox/sender.py`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.chain.keys import oracle_account, relayer_account
from backend.confirmations.relayer import Relayer
from backend.index.indexer import run_indexer
from backend.notify.dispatch import run_dispatcher
from backend.notify.events import webhook_listener
from backend.oracle.findings import evaluator
from backend.oracle.worker import Oracle
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


def start_workers(services: Services, names: tuple[str, ...] = WORKER_NAMES) -> Workers:
    workers = Workers()
    targets: dict[str, Callable[[], None]] = {
        "indexer": lambda: run_indexer(
            services,
            poll_interval=services.settings.index_poll_interval,
            stop=workers.stop,
            listeners=[webhook_listener],
        ),
        **{
            name: _run_sender(build, services, workers.stop)
            for name, build in SENDERS.items()
        },
        "webhooks": lambda: run_dispatcher(services, workers.stop),
    }
    for name in names:
        thread = threading.Thread(target=_guarded(name, targets[name]), name=name, daemon=True)
        thread.start()
        workers.threads.append(thread)
    return workers


def relayer(services: Services) -> Relayer:
    """The confirmation relayer, sending from the relayer key."""
    return Relayer(services, relayer_account(services.w3, services.settings))


def oracle(services: Services) -> Oracle:
    """The oracle: evaluates the stored samples, reports breaches and finalizes them."""
    account = oracle_account(services.w3, services.settings)
    return Oracle(services, account, evaluate=evaluator(services, account.address))


#: the senders by name (`Sender.name`), each built from the service's settings and keys
SENDERS: dict[str, Callable[[Services], Sender[Any]]] = {"relayer": relayer, "oracle": oracle}


def _run_sender(
    build: Callable[[Services], Sender[Any]], services: Services, stop: threading.Event
) -> Callable[[], None]:
    """The thread body of a sender: the one sender loop, `Sender.run_forever`."""
    return lambda: build(services).run_forever(stop)


def _guarded(name: str, target: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            target()
        except Exception:
            logger.exception("worker %s stopped with an error", name)

    return run
