"""The background workers: the indexer (with the webhook listener), the confirmation relayer, the
KPI oracle and the webhook dispatcher. `escrow serve` and `escrow up` run them in threads beside
the API (`start_workers`); `escrow index|relay|oracle|webhooks` run one each as its own process
(`run_worker`). Each runs under its lease (`backend/outbox/owner.py`): one active instance per
worker, the others on standby or refused. The two senders (relayer, oracle) run through the one
sender loop, `Sender.run_forever` (`backend/outbox/sender.py`), which takes the lease itself."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from backend.chain.keys import KeyNotConfigured, oracle_account, relayer_account
from backend.config import Settings
from backend.confirmations.relayer import Relayer
from backend.index.indexer import run_indexer
from backend.notify.dispatch import run_dispatcher
from backend.notify.events import webhook_listener
from backend.oracle.findings import evaluator
from backend.oracle.worker import Oracle
from backend.outbox.owner import ownership, worker_lease
from backend.outbox.sender import Sender
from backend.services import Services, WorkerBoard, WorkerStatus, worker_services

logger = logging.getLogger(__name__)

WORKER_NAMES = ("indexer", "relayer", "oracle", "webhooks")


@dataclass
class Workers:
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    #: the workers' own database pool (`backend.services.worker_services`), closed at shutdown
    engine: Engine | None = None

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)
        if self.engine is not None:
            self.engine.dispose()


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
    """Starts each named worker in a thread of its own (stopped by `Workers.shutdown`), each
    under `supervise`: a worker that stops with an error is started again after a backoff, and
    `services.workers` says so meanwhile (`/api/health` is degraded).

    The senders' keys are loaded first: a key that is configured but cannot be loaded (a wrong
    password, a missing file) raises `KeystoreError` naming its setting, and nothing starts. A
    sender with no key configured (off a dev chain) does not start: it is reported `off`.
    Unless the settings say to stand by (`worker_standby`), then checks that no other process
    holds any of their leases: raises `SenderBusyError` / `WorkerBusyError` then, and starts
    nothing. Standing by, a worker whose lease is held waits for it in its thread.

    The workers read and write through a pool of their own (`worker_services`), never the
    API's: requests that take every API connection cannot starve them (docs/performance.md,
    "Many clients at once")."""
    services = worker_services(services)
    try:
        return _start(services, names)
    except BaseException:
        services.engine.dispose()
        raise


def _start(services: Services, names: tuple[str, ...]) -> Workers:
    senders: dict[str, Sender[Any]] = {}
    off: dict[str, str] = {}
    for name in names:
        if name in SENDERS:
            try:
                senders[name] = SENDERS[name](services)
            except KeyNotConfigured as exc:  # that worker is off; health says so
                off[name] = exc.message
    if not services.settings.worker_standby:
        check_leases(services, names, senders)
    workers = Workers(engine=services.engine)
    policy = RestartPolicy.from_settings(services.settings)
    for name in names:
        if name in off:
            services.workers.put(WorkerStatus(name, "off", error=off[name]))
            logger.warning("worker %s is off: %s", name, off[name])
            continue
        target = supervise(
            name, _first_then_fresh(name, services, workers.stop, senders.get(name)),
            workers.stop, services.workers, policy,
        )
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        workers.threads.append(thread)
    return workers


def _first_then_fresh(
    name: str, services: Services, stop: threading.Event, sender: Sender[Any] | None
) -> Callable[[], None]:
    """Runs worker `name` with the sender built at start the first time, a new one after."""
    built = [sender]

    def run() -> None:
        run_worker(name, services, stop, sender=built.pop() if built else None)

    return run


@dataclass(frozen=True)
class RestartPolicy:
    """How soon a worker that stopped with an error is started again: `base` seconds after the
    first failure, doubling per failure in a row, at most `cap`; a worker that ran `cap`
    seconds or longer before it failed starts over at `base` (`ESCROW_WORKER_RESTART_*`)."""

    base: float = 1.0
    cap: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(base=settings.worker_restart_base, cap=settings.worker_restart_max)

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` (from 1) failures in a row."""
        return float(min(self.cap, self.base * 2 ** min(failures - 1, 62)))


def supervise(
    name: str,
    run: Callable[[], None],
    stop: threading.Event,
    board: WorkerBoard,
    policy: RestartPolicy,
    *,
    wall: Callable[[], float] = time.time,
) -> Callable[[], None]:
    """The body of worker `name`'s thread: `run()` until `stop` is set, started again after
    `policy.delay` when it raises (or returns before `stop`), the state kept on `board`
    (`running`, `restarting` with the error, the restarts so far and the next attempt's unix
    time, then `stopped`)."""

    def loop() -> None:
        failures = 0
        restarts = 0
        board.put(WorkerStatus(name, "running"))
        while not stop.is_set():
            started = time.monotonic()
            try:
                run()
            except Exception as exc:
                error = _short(exc)
                logger.exception("worker %s stopped with an error", name)
            else:
                if stop.is_set():
                    break
                error = "it returned without being told to stop"
                logger.error("worker %s stopped: %s", name, error)
            if time.monotonic() - started >= policy.cap:
                failures = 0  # it ran a good while: not a failure in a row
            failures += 1
            delay = policy.delay(failures)
            board.update(name, state="restarting", error=error, restarts=restarts,
                         next_attempt_at=wall() + delay)
            logger.warning("worker %s: starting it again in %.1f s (failure %d in a row)",
                           name, delay, failures)
            if stop.wait(delay):
                break
            restarts += 1
            board.update(name, state="running", restarts=restarts, next_attempt_at=None)
            logger.info("worker %s started again (restart %d)", name, restarts)
        board.update(name, state="stopped", next_attempt_at=None)

    return loop


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
