"""Which deployment the database serves, and the archive of the ones the chain no longer has.

A deployment is (chain id, contract address, deployment block number and hash). A local chain
that restarts (Hardhat, Anvil) brings the same chain id, the same contract address and the same
block numbers back, so escrow 1 of the new chain would otherwise inherit escrow 1's KPI samples,
breach records, measurement tokens, outbox rows and webhook deliveries of the old one. Only the
deployment block's hash tells them apart.

`claim_deployment` runs once when the service starts (`backend/services.py`), before anything
reads a chain-scoped row:

- the database has no deployment for the chain: the key becomes the active one; rows already
  there from before deployments were recorded are adopted when the index shows they are of this
  deployment, and treated as an older deployment otherwise;
- the active deployment is the key's (same contract, still on the chain): nothing changes;
- the chain no longer has the active deployment (its deployment block has another hash, or its
  contract has no code): every chain-scoped row of it is moved to `archived_row` as JSON, it is
  marked `archived` with the reason and the row counts, and the key becomes the active one;
- the chain still has the active deployment and the key names another contract: refused with
  `DeploymentConflictError` (the two would share escrow ids); `archive_active` sets the old one
  aside when the operator asks (`escrow deployments archive`).

Content-addressed documents (terms, reviews, milestone documents, attachments), webhook
subscriptions and SIWE nonces are not chain-scoped: they are identified by their content or
belong to a person, and stay shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import (
    ArchivedRow,
    BreachSubmission,
    ChainCursor,
    ConfirmationRequest,
    DeploymentRecord,
    EscrowRow,
    EventLog,
    EvidenceBundle,
    IndexedBlock,
    KpiSample,
    MeasurementToken,
    OutboxTransaction,
    SenderNonce,
    WebhookDelivery,
)
from backend.errors import ConfigurationError

ACTIVE = "active"
ARCHIVED = "archived"

#: rows moved per statement while archiving (bound parameters stay far below the drivers' limits)
ARCHIVE_BATCH = 500

#: the chain-scoped tables, children before the tables they reference
CHAIN_SCOPED: tuple[type[Any], ...] = (
    ConfirmationRequest,
    BreachSubmission,
    OutboxTransaction,
    SenderNonce,
    MeasurementToken,
    KpiSample,
    EvidenceBundle,
    EventLog,
    IndexedBlock,
    EscrowRow,
    ChainCursor,
)


@dataclass(frozen=True)
class DeploymentKey:
    """What identifies a deployment: `contract` EIP-55, `block_hash` 0x hex (None when the
    chain has no such block)."""

    chain_id: int
    contract: str
    block_number: int
    block_hash: str | None

    def describe(self) -> str:
        return (
            f"contract {self.contract} on chain {self.chain_id} (deployed in block "
            f"{self.block_number}, {self.block_hash or 'no such block'})"
        )


#: whether the chain still has a recorded deployment: None when it does, else why not
GoneCheck = Callable[[DeploymentRecord], "str | None"]


class DeploymentConflictError(ConfigurationError):
    """The database serves another contract that the chain still has (same chain id)."""

    code = "deployment_conflict"

    def __init__(self, active: DeploymentRecord, key: DeploymentKey) -> None:
        self.active_contract = active.contract
        self.contract = key.contract
        self.chain_id = key.chain_id
        super().__init__(
            f"this database serves contract {active.contract} on chain {key.chain_id}, which "
            f"the chain still has; refusing to mix its escrows with those of {key.contract}: "
            "use another ESCROW_DATABASE_URL, or set the old data aside with "
            "`escrow deployments archive`"
        )


@dataclass(frozen=True)
class Claim:
    """What `claim_deployment` found: the active deployment and the ones it archived now."""

    active: DeploymentRecord
    archived: tuple[DeploymentRecord, ...]


def claim_deployment(
    sessions: sessionmaker[Session], key: DeploymentKey, *, is_gone: GoneCheck, now: int
) -> Claim:
    """Makes `key` the database's active deployment for its chain (see the module's rules), in
    one transaction; retried once when another process claimed the chain at the same moment.

    Raises `DeploymentConflictError` when the active deployment is another contract the chain
    still has."""
    for attempt in (1, 2):
        try:
            with sessions() as session, session.begin():
                return _claim(session, key, is_gone, now)
        except IntegrityError:  # the unique active deployment per chain: someone else won
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _claim(session: Session, key: DeploymentKey, is_gone: GoneCheck, now: int) -> Claim:
    active = active_deployment(session, key.chain_id, lock=True)
    if active is None:
        active = _legacy(session, key, now)
        if active is None:
            return Claim(_insert(session, key, now), ())
    if active.contract == key.contract and active.block_number == key.block_number and (
        active.block_hash in (None, key.block_hash)
    ):
        active.block_hash = key.block_hash
        return Claim(active, ())
    reason = is_gone(active)
    if reason is None:
        if active.contract == key.contract:  # the same contract, read from another start block
            return Claim(active, ())
        raise DeploymentConflictError(active, key)
    archive(session, active, reason, now=now)
    session.flush()
    return Claim(_insert(session, key, now), (active,))


def _insert(session: Session, key: DeploymentKey, now: int) -> DeploymentRecord:
    record = DeploymentRecord(
        chain_id=key.chain_id, contract=key.contract, block_number=key.block_number,
        block_hash=key.block_hash, status=ACTIVE, created_at=now, archived_at=None,
        archived_reason=None, archived_rows=None,
    )
    session.add(record)
    session.flush()
    return record


def _legacy(session: Session, key: DeploymentKey, now: int) -> DeploymentRecord | None:
    """Rows of the chain written before deployments were recorded, as the deployment the index
    says they are of (its cursor and the stored hash of its deployment block); None when there
    are none."""
    if not any(_rows_exist(session, model, key.chain_id) for model in CHAIN_SCOPED):
        return None
    cursor = session.scalars(
        select(ChainCursor).where(ChainCursor.chain_id == key.chain_id)
        .order_by(ChainCursor.block_number.desc())
    ).first()
    if cursor is None:  # samples or tokens without an index: nothing says they are older
        return _insert(session, key, now)
    stored = session.get(IndexedBlock, (key.chain_id, cursor.deployment_block))
    return _insert(session, DeploymentKey(
        key.chain_id, cursor.contract, cursor.deployment_block,
        None if stored is None else stored.hash,
    ), now)


def _rows_exist(session: Session, model: type[Any], chain_id: int) -> bool:
    table: Table = model.__table__
    return session.execute(
        select(1).select_from(table).where(table.c.chain_id == chain_id).limit(1)
    ).first() is not None


def active_deployment(
    session: Session, chain_id: int, *, lock: bool = False
) -> DeploymentRecord | None:
    """The deployment the database serves on `chain_id`, if one was claimed."""
    query = select(DeploymentRecord).where(
        DeploymentRecord.chain_id == chain_id, DeploymentRecord.status == ACTIVE
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def archive_active(sessions: sessionmaker[Session], chain_id: int, reason: str, *, now: int) -> (
    DeploymentRecord | None
):
    """Sets the active deployment of `chain_id` aside on the operator's word; None when the
    database serves none there."""
    with sessions() as session, session.begin():
        active = active_deployment(session, chain_id, lock=True)
        if active is None:
            return None
        archive(session, active, reason, now=now)
        return active


def archive(session: Session, record: DeploymentRecord, reason: str, *, now: int) -> None:
    """Moves every chain-scoped row of `record`'s chain to `archived_row` and marks it archived
    (inside the caller's transaction, so the move is all or nothing)."""
    counts: dict[str, int] = {}
    for model in CHAIN_SCOPED:
        table: Table = model.__table__
        moved = _move(session, record.id, table, table.c.chain_id == record.chain_id)
        if moved:
            counts[table.name] = moved
    deliveries = _webhook_deliveries(session, record.chain_id)
    webhooks: Table = WebhookDelivery.__table__  # type: ignore[assignment]
    for start in range(0, len(deliveries), ARCHIVE_BATCH):
        moved = _move(session, record.id, webhooks, webhooks.c.id.in_(
            deliveries[start:start + ARCHIVE_BATCH]
        ))
        counts[webhooks.name] = counts.get(webhooks.name, 0) + moved
    record.status = ARCHIVED
    record.archived_at = now
    record.archived_reason = reason
    record.archived_rows = counts


def _move(session: Session, deployment_id: int, table: Table, where: ColumnElement[bool]) -> int:
    key = list(table.primary_key.columns)
    moved = 0
    while True:
        rows = [dict(r) for r in session.execute(
            select(table).where(where).order_by(*key).limit(ARCHIVE_BATCH)
        ).mappings()]
        if not rows:
            return moved
        session.execute(insert(ArchivedRow), [
            {"deployment_id": deployment_id, "table_name": table.name, "data": row}
            for row in rows
        ])
        ids = [tuple(row[c.name] for c in key) for row in rows]
        session.execute(delete(table).where(tuple_(*key).in_(ids)))
        moved += len(rows)


def _webhook_deliveries(session: Session, chain_id: int) -> list[str]:
    """Ids of the deliveries about `chain_id`: their event key is `<type>:<chain id>:...`
    (`backend/notify/events.py`)."""
    found = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.event_key)
        .where(WebhookDelivery.event_key.like(f"%:{chain_id}:%"))
    ).all()
    return [id_ for id_, event_key in found if event_key.split(":")[1:2] == [str(chain_id)]]


@dataclass(frozen=True)
class DeploymentSummary:
    """One deployment as `escrow deployments` and `escrow up` list it."""

    id: int
    chain_id: int
    contract: str
    block_number: int
    block_hash: str | None
    status: str
    created_at: int
    archived_at: int | None
    archived_reason: str | None
    archived_rows: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_deployments(session: Session, chain_id: int | None = None) -> list[DeploymentSummary]:
    """Every deployment the database knows (of `chain_id`, when given), newest first."""
    query = select(DeploymentRecord).order_by(DeploymentRecord.id.desc())
    if chain_id is not None:
        query = query.where(DeploymentRecord.chain_id == chain_id)
    return [_summary(r) for r in session.scalars(query)]


def _summary(record: DeploymentRecord) -> DeploymentSummary:
    return DeploymentSummary(
        id=record.id, chain_id=record.chain_id, contract=record.contract,
        block_number=record.block_number, block_hash=record.block_hash, status=record.status,
        created_at=record.created_at, archived_at=record.archived_at,
        archived_reason=record.archived_reason,
        archived_rows={k: int(v) for k, v in (record.archived_rows or {}).items()},
    )


def archived_rows(
    session: Session, deployment_id: int, table_name: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table name, row) of every row archived with deployment `deployment_id`, in the order
    they were archived."""
    query = select(ArchivedRow.table_name, ArchivedRow.data).where(
        ArchivedRow.deployment_id == deployment_id
    ).order_by(ArchivedRow.id)
    if table_name is not None:
        query = query.where(ArchivedRow.table_name == table_name)
    for name, data in session.execute(query):
        yield str(name), dict(data)


def summaries(records: Sequence[DeploymentRecord]) -> list[DeploymentSummary]:
    return [_summary(r) for r in records]
