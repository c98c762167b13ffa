"""`escrow status`: what the service is doing, read from the configured database and node
directly (no API needed): its health (the checks of `GET /api/health`), the index lag, and each
outbox's rows by status with the oldest item still waiting. Exit 0 ok, 1 degraded, 2 refused
(the database does not answer, no deployment is known)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from backend.cli.common import JsonFlag, app, console, echo_json, get_settings, local_time
from backend.errors import UnavailableError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from web3 import Web3

    from backend.api.health import Health
    from backend.config import Settings
    from backend.db.models import DeploymentRecord
    from backend.outbox.backlog import Backlog

#: exit status of a degraded service (ok is 0, refused `EXIT_REFUSED`)
EXIT_DEGRADED = 1
#: seconds `escrow status` waits for the node
NODE_TIMEOUT = 10.0
#: the outboxes, in the order shown, with what their items are
OUTBOXES = {
    "relayer": "confirmation requests",
    "oracle": "breach reports",
    "webhooks": "webhook deliveries",
}


@dataclass(frozen=True)
class ServiceStatus:
    """What `escrow status` reports: `health` as `/api/health` has it, and each outbox's
    `Backlog` by name (`OUTBOXES`), at service time `now` (unix seconds)."""

    health: Health
    backlogs: dict[str, Backlog]
    now: int
    max_lag: int
    confirmations: int

    @property
    def ok(self) -> bool:
        return self.health.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """`{status, reason, chain_id, contract, head_block, indexed_block, lag_blocks,
        max_lag, confirmations, checked_at, outboxes: {name: {what, counts, waiting, oldest:
        {id, status, since, age_seconds, about} | null}}}`. (The health's `workers` are left
        out: they are the serving process's threads, which only its `GET /api/health` sees.)"""
        health = self.health.to_json()
        health.pop("workers", None)
        return {
            **health,
            "max_lag": self.max_lag,
            "confirmations": self.confirmations,
            "checked_at": self.now,
            "outboxes": {
                name: {"what": OUTBOXES[name], **backlog.to_json(self.now)}
                for name, backlog in self.backlogs.items()
            },
        }


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown_database(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: the engine says so itself
        return "the configured database"


def _served(
    session: Session, settings: Settings, chain_id: int | None, node_error: str | None,
) -> tuple[int, str, int, str | None]:
    """(chain id, contract, deployment block, its recorded hash) of the deployment to report:
    the one the database serves on the node's chain (`ESCROW_CONTRACT_ADDRESS` wins over it),
    else the deployment record of the data folder. Without a node, the one deployment the
    database serves (of `ESCROW_CONTRACT_ADDRESS`, if set). Raises `UnavailableError` when
    neither says which."""
    from sqlalchemy import select

    from backend.chain.deploy import read_deployment
    from backend.db.deployments import ACTIVE, active_deployment
    from backend.db.models import DeploymentRecord

    wanted = settings.contract_address
    if chain_id is None:
        actives: list[DeploymentRecord] = list(
            session.scalars(select(DeploymentRecord).where(DeploymentRecord.status == ACTIVE))
        )
        if wanted is not None:
            actives = [r for r in actives if r.contract.lower() == wanted.lower()]
        if len(actives) != 1:
            raise UnavailableError(
                "node", f"{node_error}; and the database serves "
                f"{len(actives) or 'no'} deployments to report on without it"
            )
        chain_id = actives[0].chain_id
    record = active_deployment(session, chain_id)
    if record is not None and (wanted is None or record.contract.lower() == wanted.lower()):
        return chain_id, record.contract, record.block_number, record.block_hash
    if wanted is not None:
        return chain_id, wanted, 0, None
    found = read_deployment(settings.data_dir, chain_id)  # DeploymentMissing: exit 2
    return chain_id, found.address, found.block, None


def collect_status(settings: Settings, *, w3: Web3 | None = None) -> ServiceStatus:
    """Reads the service's status from the database and the node of `settings` (or `w3`),
    changing nothing: health by `backend.api.health.check_health`, the backlogs by
    `Sender.backlog` (relayer, oracle) and `delivery_backlog` (webhooks).

    Raises `UnavailableError` when the database does not answer (or has no tables yet), or
    when the node does not answer and the database serves no single deployment to report on;
    `DeploymentMissing` when no deployment of the node's chain is known."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from backend.api.health import check_health
    from backend.chain.client import EscrowClient
    from backend.chain.clock import service_time
    from backend.chain.connect import connect
    from backend.chain.deploy import DeploymentWatch
    from backend.confirmations.relayer import Relayer
    from backend.db.session import make_engine, session_factory
    from backend.notify.dispatch import delivery_backlog
    from backend.oracle.submitter import Submitter
    from backend.services import Services

    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        sessions = session_factory(engine)
        try:
            with sessions() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise UnavailableError("database", f"{_shown_database(url)}: {_short(exc)}") from None
        node = w3 if w3 is not None else connect(settings.rpc_url, timeout=NODE_TIMEOUT)
        chain_id: int | None = None
        node_error: str | None = None
        try:
            chain_id = int(node.eth.chain_id)
        except Exception as exc:  # the node is down: the database may still say which chain
            node_error = f"the node at {settings.rpc_url} does not answer: {_short(exc)}"
        try:
            with sessions() as session:
                chain_id, contract, block, block_hash = _served(
                    session, settings, chain_id, node_error
                )
                services = Services(
                    settings=settings, engine=engine, sessions=sessions, w3=node,
                    chain_id=chain_id, escrow=EscrowClient(node, contract, from_block=block),
                    deployment_block=block,
                    deployment=DeploymentWatch(node, contract, block, block_hash),
                )
                health = check_health(services, session)
                backlogs = {
                    "relayer": Relayer.backlog(session, chain_id),
                    "oracle": Submitter.backlog(session, chain_id),
                    "webhooks": delivery_backlog(session, chain_id),
                }
        except SQLAlchemyError as exc:
            raise UnavailableError(
                "database", f"{_shown_database(url)} cannot be read (not migrated yet? `escrow "
                f"serve` migrates it): {_short(exc)}"
            ) from None
    finally:
        engine.dispose()
    return ServiceStatus(health, backlogs, service_time(), settings.index_max_lag,
                         settings.confirmations)


def _ago(seconds: int) -> str:
    return f"{seconds} s ago"


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{status} {n}" for status, n in counts.items() if n]
    return ", ".join(shown) or "none"


def print_status(status: ServiceStatus) -> None:
    """The status for people: health, chain and index, then a table of the outboxes."""
    from rich.table import Table

    h = status.health
    colour = "green" if status.ok else "red"
    console.print(f"status: [{colour}]{h.status}[/{colour}]", soft_wrap=True)
    if h.reason:
        console.print(f"why: {h.reason}", soft_wrap=True)
    console.print(f"chain {h.chain_id}, contract {h.contract}", soft_wrap=True)
    head = "-" if h.head_block is None else str(h.head_block)
    indexed = "-" if h.indexed_block is None else str(h.indexed_block)
    lag = "-" if h.lag_blocks is None else f"{h.lag_blocks} blocks"
    console.print(
        f"index: head block {head}, indexed block {indexed}, lag {lag} (confirmed head = head - "
        f"{status.confirmations}; degraded beyond {status.max_lag})", soft_wrap=True,
    )
    table = Table("outbox", "items", "by status", "waiting", "oldest waiting", "since", "age")
    for name, backlog in status.backlogs.items():
        oldest = backlog.oldest
        table.add_row(
            name, OUTBOXES[name], _counts(backlog.counts), str(backlog.waiting),
            "-" if oldest is None else f"#{oldest.id} {oldest.status}: {oldest.about}",
            "-" if oldest is None else local_time(oldest.since),
            "-" if oldest is None else _ago(max(0, status.now - oldest.since)),
        )
    console.print(table)


@app.command("status")
def status_cmd(as_json: JsonFlag = False) -> None:
    """Health, index lag and every outbox's backlog, from the database and the node directly.
    Exit 0 ok, 1 degraded, 2 refused (database unreachable)."""
    status = collect_status(get_settings())
    if as_json:
        echo_json(status.to_json())
    else:
        print_status(status)
    if not status.ok:
        raise typer.Exit(EXIT_DEGRADED)
