"""The long-lived objects the API and the workers share, built once at start-up."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3

from backend.chain.bulk_rpc import block_hash
from backend.chain.client import EscrowClient
from backend.chain.clock import Clock, WallClock, system_wall
from backend.chain.connect import bound_recursion, connect
from backend.chain.deploy import Deployment, DeploymentWatch, gone_reason, read_deployment
from backend.chain.probe import NodeProbe
from backend.config import Settings
from backend.db.deployments import (
    DeploymentKey,
    DeploymentSummary,
    claim_deployment,
    summaries,
)
from backend.db.session import migrate, pooled_engine, session_factory

#: what a background worker of this process is doing: `running` (active or standing by for
#: its lease), `restarting` (it stopped with an error; started again at `next_attempt_at`),
#: `off` (never started: no key configured for it), `stopped` (told to stop)
WorkerState = Literal["running", "restarting", "off", "stopped"]


@dataclass(frozen=True)
class WorkerStatus:
    """One worker's state as `/api/health` reports it (`backend/workers.py` keeps it)."""

    name: str
    state: WorkerState
    #: why it is not running (`restarting`, `off`), or the last error it was restarted after
    error: str | None = None
    #: times it was started again after an error since this process started
    restarts: int = 0
    #: unix seconds of the next start while `restarting`, else None
    next_attempt_at: float | None = None


class WorkerBoard:
    """The states of the workers this process runs, updated by their threads and read by the
    health check; empty when the process runs none (`escrow serve --no-workers`). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, WorkerStatus] = {}

    def put(self, status: WorkerStatus) -> None:
        with self._lock:
            self._states[status.name] = status

    def update(self, name: str, **changes: object) -> WorkerStatus:
        """The worker's status with `changes` (fields of `WorkerStatus`), stored and returned."""
        with self._lock:
            current = self._states.get(name) or WorkerStatus(name, "running")
            status = replace(current, **changes)  # type: ignore[arg-type]
            self._states[name] = status
            return status

    def get(self, name: str) -> WorkerStatus | None:
        with self._lock:
            return self._states.get(name)

    def all(self) -> list[WorkerStatus]:
        """Every worker's status, in the order they were first reported."""
        with self._lock:
            return list(self._states.values())


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    w3: Web3
    chain_id: int
    escrow: EscrowClient
    #: block the contract was deployed in (where the indexer starts)
    deployment_block: int
    #: whether the chain still has the deployment served (workers and the API ask it)
    deployment: DeploymentWatch
    #: the deployments set aside when this process started (a reset chain), oldest first
    archived: tuple[DeploymentSummary, ...] = ()
    #: the wall clock behind `clock`'s service time (tests put a fixed one here)
    wall: WallClock = field(default=system_wall)
    #: the background workers this process runs and their states (`backend/workers.py`)
    workers: WorkerBoard = field(default_factory=WorkerBoard)
    #: node reads with a deadline, for health and metrics (`backend/chain/probe.py`)
    probe: NodeProbe = field(default_factory=NodeProbe)

    @property
    def clock(self) -> Clock:
        """Chain time of `w3` and service time of `wall` (`backend.chain.clock`)."""
        return Clock(self.w3, self.wall)


def build_services(
    settings: Settings,
    *,
    w3: Web3 | None = None,
    contract_address: str | None = None,
    deployment_block: int | None = None,
) -> Services:
    """Connects to the chain and the database (migrating it) for `settings`, and makes the
    contract's deployment the one the database serves (`backend/db/deployments.py`): rows of a
    deployment the chain no longer has are archived first.

    Raises `DeploymentConflictError` when the database serves another contract of the same
    chain that the chain still has, `DeploymentMissing` when no contract is configured or
    recorded."""
    bound_recursion()  # the chain libraries' imports raised it (`backend/chain/connect.py`)
    w3 = w3 or connect(settings.rpc_url)  # timeout: ESCROW_RPC_TIMEOUT
    chain_id = int(w3.eth.chain_id)
    address = contract_address or settings.contract_address
    block = deployment_block
    if address is None:
        deployment: Deployment = read_deployment(settings.data_dir, chain_id)
        address, block = deployment.address, deployment.block
    # the API's pool: ESCROW_DB_POOL_SIZE connections, no overflow (backend/api/admission.py)
    engine = pooled_engine(settings.resolved_database_url, pool_size=settings.db_pool_size,
                           pool_timeout=settings.db_pool_timeout)
    migrate(engine)
    start = block if block is not None else 0
    escrow = EscrowClient(w3, address, from_block=start)
    key = DeploymentKey(chain_id, escrow.address, start, block_hash(w3, start))
    sessions = session_factory(engine)
    claim = claim_deployment(
        sessions, key, now=Clock(None).service_time(),
        is_gone=lambda old: gone_reason(w3, old.contract, old.block_number, old.block_hash),
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        w3=w3,
        chain_id=chain_id,
        escrow=escrow,
        deployment_block=start,
        deployment=DeploymentWatch(w3, escrow.address, start, key.block_hash),
        archived=tuple(summaries(claim.archived)),
    )


#: seconds a worker waits for a connection of its own pool (nothing but workers use it)
WORKER_POOL_TIMEOUT = 30.0


def worker_services(services: Services) -> Services:
    """`services` with an engine and sessions of their own for the background workers that
    run beside the API in one process (`escrow serve`, `escrow up`): ESCROW_WORKER_DB_POOL_SIZE
    connections (as many more while busy), so a burst of requests that takes every connection
    of the API's pool never starves the indexer, the relayer, the oracle or the webhooks, and
    the workers never take the connections the API's admission limit counts on. Everything
    else (chain, deployment watch, worker board, probe) is shared. The caller disposes of the
    new engine (`backend.workers.Workers.shutdown`)."""
    size = services.settings.worker_db_pool_size
    engine = pooled_engine(services.settings.resolved_database_url, pool_size=size,
                           pool_timeout=WORKER_POOL_TIMEOUT, overflow=size)
    return replace(services, engine=engine, sessions=session_factory(engine))
