"""The long-lived objects the API and the workers share, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3

from backend.chain.bulk_rpc import block_hash
from backend.chain.client import EscrowClient
from backend.chain.clock import Clock, WallClock, system_wall
from backend.chain.connect import connect
from backend.chain.deploy import Deployment, DeploymentWatch, gone_reason, read_deployment
from backend.config import Settings
from backend.db.deployments import (
    DeploymentKey,
    DeploymentSummary,
    claim_deployment,
    summaries,
)
from backend.db.session import make_engine, migrate, session_factory


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
    w3 = w3 or connect(settings.rpc_url)
    chain_id = int(w3.eth.chain_id)
    address = contract_address or settings.contract_address
    block = deployment_block
    if address is None:
        deployment: Deployment = read_deployment(settings.data_dir, chain_id)
        address, block = deployment.address, deployment.block
    engine = make_engine(settings.resolved_database_url)
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
