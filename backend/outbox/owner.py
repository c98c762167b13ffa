"""Worker leases: exactly one active instance of each worker.

A lease is named for the worker and what it works on: a transaction sender (`relayer`, `oracle`)
for (sender, chain, account), since one process must own the account's nonces; the indexer and
the webhook dispatcher (`indexer`, `webhooks`) for (worker, chain, contract). It is

- on PostgreSQL a session advisory lock (`pg_try_advisory_lock` of `lock_key`), held on a
  connection of its own, outside the API's and the worker's pools (application name
  `escrow <worker> pid <pid>`, so `pg_stat_activity` names the holder). A process that dies,
  even by SIGKILL, closes its connection and the server releases the lock;
- on SQLite an exclusive `flock` of `<data dir>/<worker>-<chain id>-<subject>.lock` (subject in
  lower case), which the kernel releases when the process dies.

A worker that finds its lease held either refuses at once (`SenderBusyError` /
`WorkerBusyError`, exit 2 on the command line) or waits as **standby**: it logs
"standby: another <worker> is active" once and tries again every `lease_poll_interval` seconds
(`ESCROW_LEASE_POLL_INTERVAL`, 1 s), so it becomes active within about that long after the
holder dies. Which one is `ESCROW_WORKER_STANDBY` (false: refuse), or the caller's `standby`.

While active, the worker's loop runs under the `Lease` the context manager yields: a
`threading.Event` that is set when the worker is told to stop, and whose `is_set()`, asked once
per pass of the loop, also checks that the lease is still held (on PostgreSQL: this session
still holds the advisory lock). A lease lost (the lease connection dropped: PostgreSQL restarted,
the session was terminated) stops the loop's work there: `is_set()` logs it and stands by until
the lease is held again (or the worker is told to stop), so two instances are never active
together beyond the one pass under way when the connection dropped (and every step of a sender's
pass is safe against a second sender anyway: nonces are taken under a row lock and only stored
bytes are broadcast)."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from hashlib import sha256
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from backend.errors import ConfigurationError
from backend.services import Services

logger = logging.getLogger(__name__)


class WorkerBusyError(ConfigurationError):
    """Another process already runs this worker (the indexer, the webhook dispatcher) for this
    contract on this chain."""

    code = "worker_busy"

    def __init__(self, worker: str, subject: str, chain_id: int, message: str | None = None
                 ) -> None:
        self.worker = worker
        self.subject = subject
        self.chain_id = chain_id
        super().__init__(
            message or f"another {worker} is already active for {subject} on chain {chain_id}; "
            "only one may run at a time (start it with --standby to wait as its standby)"
        )


class SenderBusyError(WorkerBusyError):
    """Another process already runs this sender from this account on this chain."""

    code = "sender_busy"

    def __init__(self, sender: str, account: str, chain_id: int) -> None:
        self.sender = sender
        self.account = account
        super().__init__(
            sender, account, chain_id,
            f"another {sender} already sends from {account} on chain {chain_id}; "
            "only one process may own its nonce",
        )


def lock_key(sender: str, chain_id: int, account: str) -> int:
    """A signed 64-bit advisory-lock key for (worker, chain, account or contract)."""
    digest = sha256(f"quality-escrow {sender} {chain_id} {account.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# ---------------------------------------------------------------------------- holders


class _Holder(ABC):
    """One way of holding a lease: try to take it, check it is still held, let it go."""

    @abstractmethod
    def try_acquire(self) -> bool:
        """Takes the lease if it is free: True when held now. Raises when the database cannot
        be reached."""

    @abstractmethod
    def held(self) -> bool:
        """Whether this process still holds the lease (False on any error)."""

    @abstractmethod
    def release(self) -> None:
        """Lets the lease go (never raises)."""

    def holder(self) -> str | None:
        """Who holds the lease, when the database says (best effort)."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Lets the lease go and frees what holding it took (never raises)."""


class _AdvisoryLock(_Holder):
    """A PostgreSQL session advisory lock on a connection of its own (NullPool engine)."""

    def __init__(self, engine: Engine, key: int, worker: str) -> None:
        self.key = key
        # pg_locks shows a bigint key as (classid, objid) = (high, low) 32 bits, objsubid 1
        self.high = (key >> 32) & 0xFFFFFFFF
        self.low = key & 0xFFFFFFFF
        name = f"escrow {worker} pid {os.getpid()}"[:63]
        self.engine = create_engine(
            engine.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "application_name": name,
                "connect_timeout": 10,
                # a server gone without a word (no RST) is noticed within seconds
                "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                "keepalives_count": 3, "tcp_user_timeout": 10_000,
            },
        )
        self.conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self.conn is None:
            self.conn = self.engine.connect()
        try:
            got = bool(self.conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}
            ).scalar())
        except Exception:
            self._drop()
            raise
        return got

    _HELD = text(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid = pg_backend_pid() AND classid::bigint = :hi AND objid::bigint = :lo"
        " AND objsubid = 1)"
    )

    def held(self) -> bool:
        if self.conn is None:
            return False
        try:
            return bool(self.conn.execute(self._HELD, {"hi": self.high, "lo": self.low}).scalar())
        except Exception:
            self._drop()
            return False

    def holder(self) -> str | None:
        if self.conn is None:
            return None
        try:
            name = self.conn.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.objsubid = 1"
            ), {"hi": self.high, "lo": self.low}).scalar()
        except Exception:
            return None
        return str(name) if name else None

    def release(self) -> None:
        if self.conn is not None:
            with suppress(Exception):  # the connection is gone, and the lock with it
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self._drop()

    def close(self) -> None:
        self.release()
        self.engine.dispose()

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with suppress(Exception):
                conn.invalidate()  # never back to a pool: closing the session frees the lock
                conn.close()


class _FileLock(_Holder):
    """An exclusive flock of a file in the data dir (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def held(self) -> bool:
        return self.fd is not None  # the kernel keeps it until the descriptor closes

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self.release()


def _holder(services: Services, worker: str, subject: str) -> _AdvisoryLock | _FileLock:
    if services.engine.dialect.name == "postgresql":
        return _AdvisoryLock(services.engine, lock_key(worker, services.chain_id, subject), worker)
    return _FileLock(
        services.settings.data_dir / f"{worker}-{services.chain_id}-{subject.lower()}.lock"
    )


# ---------------------------------------------------------------------------- the lease


class Lease(threading.Event):
    """The stop event of a worker loop that holds a lease (see the module docstring).

    `is_set()`: True once the worker is told to stop; otherwise checks the lease and, when it
    was lost, stands by (blocking) until it is held again, then answers False, or True if told
    to stop meanwhile. `wait(timeout)` waits for the stop; `set()` tells the worker to stop."""

    def __init__(
        self, holder: _Holder, what: str, fields: dict[str, object], stop: threading.Event,
        poll: float,
    ) -> None:
        super().__init__()
        self._holder = holder
        self._what = what
        self._fields = fields
        self._stop = stop
        self._poll = poll
        self.active = False

    def is_set(self) -> bool:
        if self._stop.is_set():
            return True
        if self.active and self._holder.held():
            return False
        if self.active:
            self.active = False
            logger.warning(
                "lease of the %s lost (its database connection dropped); standing by until it "
                "is held again", self._what, extra={"event": "lease_lost", **self._fields},
            )
            self._holder.release()
        self.active = _wait_for(self._holder, self._what, self._fields, self._stop, self._poll)
        return not self.active

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def set(self) -> None:
        self._stop.set()

    def clear(self) -> None:
        self._stop.clear()


def _wait_for(
    holder: _Holder, what: str, fields: dict[str, object], stop: threading.Event, poll: float
) -> bool:
    """Standby: tries to take the lease every `poll` seconds until it is held (True) or `stop`
    is set (False). Logs the standby once (event `lease_standby`), a database it cannot reach
    once per outage, and becoming active (`lease_active`); `fields` go with every line."""
    started = time.monotonic()
    announced = False
    unreachable = False
    while True:
        try:
            if holder.try_acquire():
                if announced or unreachable:
                    waited = round(time.monotonic() - started, 3)
                    logger.info("active: the %s, after %.1f s on standby", what, waited,
                                extra={"event": "lease_active", "standby_seconds": waited,
                                       **fields})
                return True
            unreachable = False
            if not announced:
                found = holder.holder()
                logger.info("standby: another %s is active%s; taking over when it stops", what,
                            f" ({found})" if found else "",
                            extra={"event": "lease_standby", "holder": found, **fields})
                announced = True
        except Exception as exc:
            if not unreachable:
                logger.warning("standby: the %s's lease cannot be taken now (%s: %s); trying "
                               "again", what, type(exc).__name__, str(exc).splitlines()[0],
                               extra={"event": "lease_unreachable", **fields})
                unreachable = True
        if stop.wait(poll):
            return False


@contextmanager
def _lease(
    services: Services, worker: str, subject: str, what: str, busy: WorkerBusyError,
    stop: threading.Event | None, standby: bool | None,
) -> Iterator[Lease]:
    settings = services.settings
    wait = settings.worker_standby if standby is None else standby
    holder = _holder(services, worker, subject)
    fields: dict[str, object] = {
        "worker": worker, "subject": subject, "chain_id": services.chain_id,
    }
    poll = settings.lease_poll_interval
    lease = Lease(holder, what, fields, stop or threading.Event(), poll)
    try:
        if holder.try_acquire():
            lease.active = True
        elif not wait:
            raise busy
        else:
            lease.active = _wait_for(holder, what, fields, lease._stop, poll)
        yield lease
    finally:
        holder.close()


def ownership(
    services: Services,
    sender: str,
    account: str,
    stop: threading.Event | None = None,
    *,
    standby: bool | None = None,
) -> AbstractContextManager[Lease]:
    """The lease of (`sender`, the chain, `account`), held while the block runs; yields the
    `Lease`, the stop event the sender's loop runs under (`with ownership(...) as stop:`).

    Raises `SenderBusyError` at once when another process (or thread) holds it, unless standing
    by (`standby`, default `ESCROW_WORKER_STANDBY`): then waits until it is free or `stop` is
    set (the yielded lease is then set: the loop does not run)."""
    return _lease(
        services, sender, account, f"{sender} {account}",
        SenderBusyError(sender, account, services.chain_id), stop, standby,
    )


def worker_lease(
    services: Services,
    worker: str,
    stop: threading.Event | None = None,
    *,
    standby: bool | None = None,
) -> AbstractContextManager[Lease]:
    """The lease of a worker of the served contract (`indexer`, `webhooks`), held while the
    block runs: as `ownership`, for (`worker`, the chain, the contract); `WorkerBusyError`."""
    contract = services.escrow.address
    return _lease(
        services, worker, contract, worker,
        WorkerBusyError(worker, contract, services.chain_id), stop, standby,
    )

