"""Worker leases on both databases (a PostgreSQL advisory lock on a connection of its own, a file
lock on SQLite): a second instance refuses at once or waits as standby and takes the lease once the
first lets it go; a standby told to stop gives up without it; the indexer and the webhook
dispatcher have leases of their own; a lease whose PostgreSQL connection drops stops the worker
until it holds the lease again, so two instances are never active together."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from backend.outbox.owner import (
    Lease,
    SenderBusyError,
    WorkerBusyError,
    lock_key,
    ownership,
    worker_lease,
)
from backend.services import Services
from backend.workers import start_workers
from tests.confirmations.support import relay_services
from tests.support import EscrowEnv

ACCOUNT = "0x" + "5a" * 20
#: seconds between two attempts of a standby here
POLL = 0.05


MakeServices = Callable[..., Services]


@pytest.fixture
def make(env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[MakeServices]:
    """Builds another process's services on the same chain, database and data dir (standing
    by when refused, unless told `worker_standby=False`)."""
    built: list[Services] = []

    def build(**settings: object) -> Services:
        settings.setdefault("worker_standby", True)
        services = relay_services(env, database_url, tmp_path / "data",
                                  lease_poll_interval=POLL, **settings)
        built.append(services)
        return services

    try:
        yield build
    finally:
        for services in built:
            services.engine.dispose()


@pytest.fixture
def two(make: MakeServices) -> tuple[Services, Services]:
    """Two processes' services on the same database and data dir, standing by when refused."""
    return make(), make()


class Standby:
    """`ownership` of the second services in a thread: when it became active, and its lease."""

    def __init__(self, services: Services, stop: threading.Event, name: str = "relayer") -> None:
        self.active_at: float | None = None
        self.lease: Lease | None = None
        self.done = threading.Event()
        self.release = threading.Event()

        def run() -> None:
            with ownership(services, name, ACCOUNT, stop) as lease:
                self.lease = lease
                if lease.active:
                    self.active_at = time.monotonic()
                    self.release.wait(10)
            self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_a_standby_waits_and_takes_the_lease_within_a_poll_of_its_release(
    two: tuple[Services, Services], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = two
    caplog.set_level(logging.INFO, logger="backend.outbox.owner")
    with ownership(first, "relayer", ACCOUNT) as held:
        assert held.active and not held.is_set()
        standby = Standby(second, threading.Event())
        time.sleep(10 * POLL)
        assert standby.active_at is None  # still waiting
        released = time.monotonic()
    deadline = time.monotonic() + 5
    while standby.active_at is None:
        assert time.monotonic() < deadline, "the standby did not take the lease"
        time.sleep(0.01)
    assert standby.active_at - released < 1.0
    standby.join()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("standby:")]
    assert len(said) == 1, said  # said once, however many times it tried
    assert said[0].startswith(f"standby: another relayer {ACCOUNT} is active")


def test_a_standby_told_to_stop_leaves_without_the_lease(
    two: tuple[Services, Services],
) -> None:
    first, second = two
    stop = threading.Event()
    with ownership(first, "oracle", ACCOUNT):
        standby = Standby(second, stop, "oracle")
        time.sleep(5 * POLL)
        stop.set()
        assert standby.done.wait(5)
        assert standby.active_at is None and standby.lease is not None
        assert standby.lease.is_set()  # the loop under it does not run
    standby.thread.join(5)


def test_refusing_is_at_once_and_names_the_worker(two: tuple[Services, Services]) -> None:
    first, second = two
    with ownership(first, "relayer", ACCOUNT):
        started = time.monotonic()
        with pytest.raises(SenderBusyError) as busy, ownership(second, "relayer", ACCOUNT,
                                                               standby=False):
            pass
        assert time.monotonic() - started < 1.0
        assert busy.value.code == "sender_busy"
    with worker_lease(first, "indexer"):
        with pytest.raises(WorkerBusyError) as busy, worker_lease(second, "indexer",
                                                                  standby=False):
            pass
        assert busy.value.code == "worker_busy"
        assert str(busy.value).startswith(
            f"another indexer is already active for {first.escrow.address} on chain "
            f"{first.chain_id}"
        )
        with worker_lease(second, "webhooks", standby=False):  # a lease of its own
            pass


def test_start_workers_refuses_before_starting_anything_unless_standing_by(
    make: MakeServices,
) -> None:
    first, waiting_services, refusing = make(), make(), make(worker_standby=False)
    with worker_lease(first, "webhooks"):
        with pytest.raises(WorkerBusyError):
            start_workers(refusing, ("indexer", "webhooks"))
        waiting = start_workers(waiting_services, ("webhooks",))  # stands by in its thread
        time.sleep(5 * POLL)
        assert all(t.is_alive() for t in waiting.threads)
    try:
        deadline = time.monotonic() + 5
        with pytest.raises(WorkerBusyError):  # it takes over once the lease is free
            while time.monotonic() < deadline:
                with worker_lease(refusing, "webhooks"):
                    pass  # free still: let go at once, and leave the standby its turn
                time.sleep(3 * POLL)
    finally:
        waiting.shutdown()
    assert not any(t.is_alive() for t in waiting.threads)


# ------------------------------------------------------------------ PostgreSQL: a lost lease


def _terminate_holder(services: Services, name: str, subject: str) -> int:
    """Ends the PostgreSQL session holding the lease (as a server restart would); its pid."""
    key = lock_key(name, services.chain_id, subject)
    admin = create_engine(services.engine.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            pid = conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
                " AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            ), {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalar()
            assert pid is not None, "nobody holds the lease"
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            return int(pid)
    finally:
        admin.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lease_whose_connection_dropped_stops_the_worker_until_it_holds_it_again(
    two: tuple[Services, Services], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = two  # (a file lock cannot be lost while its process lives)
    caplog.set_level(logging.INFO, logger="backend.outbox.owner")
    stop = threading.Event()
    with ownership(first, "relayer", ACCOUNT, stop) as lease:
        assert not lease.is_set()
        _terminate_holder(first, "relayer", ACCOUNT)
        standby = Standby(second, threading.Event())  # takes the lease the first one lost
        deadline = time.monotonic() + 5
        while standby.active_at is None:
            assert time.monotonic() < deadline, "the standby did not take the free lease"
            time.sleep(0.01)
        answered: list[bool] = []
        asking = threading.Thread(target=lambda: answered.append(lease.is_set()), daemon=True)
        asking.start()  # the first one's next pass: it finds the lease lost and stands by
        asking.join(10 * POLL)
        assert asking.is_alive() and not answered  # not active while the second one is
        assert not lease.active
        standby.join()  # the second one stops: the first one is active again
        asking.join(5)
        assert answered == [False] and lease.active
        assert not lease.is_set()
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert lost and lost[0].startswith(f"lease of the relayer {ACCOUNT} lost")
