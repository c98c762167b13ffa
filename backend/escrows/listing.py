"""The list of escrows the API serves (`GET /api/escrows`), from the `escrow` projection, and
the JSON conventions shared with the detail (`backend.escrows.detail`). Database only, no RPC:
token metadata comes from the cached `TokenMetadata`.

Conventions (`docs/interface.md`): addresses EIP-55, hashes lower-case 0x hex, uint256 values
decimal strings, times unix seconds, enum states as lower-case names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from backend.chain.tokens import TokenMetadata
from backend.chain.types import Status
from backend.db.models import EscrowRow
from backend.errors import NotFoundError
from backend.escrows.next_steps import ROLES
from backend.index.indexer import escrow_ledger
from backend.index.ledger import EscrowLedger
from backend.inputs import parse_escrow_id

STATUSES = tuple(s.name.lower() for s in Status if s != Status.NONE)


@dataclass(frozen=True)
class EscrowFilter:
    """What `GET /api/escrows` narrows to: each given role held by that address (EIP-55),
    `party` holding any of the four roles, and the status; all given conditions hold."""

    client: str | None = None
    provider: str | None = None
    status: str | None = None
    arbiter: str | None = None
    oracle: str | None = None
    party: str | None = None


def row_roles(row: EscrowRow, account: str) -> list[str]:
    """The roles `account` (EIP-55) holds in the escrow row, in `ROLES` order."""
    return [role for role in ROLES if getattr(row, role) == account]


def enum_name(value: Any) -> str | None:
    """An enum member as its lower-case name (`MilestoneState.SETTLED` -> "settled")."""
    return None if value is None else str(value.name).lower()


def escrow_summary(row: EscrowRow, tokens: TokenMetadata) -> dict[str, Any]:
    return {
        "id": row.escrow_id,
        "status": row.status,
        "client": row.client,
        "provider": row.provider,
        "oracle": row.oracle,
        "arbiter": row.arbiter,
        "token": tokens.get(row.token).to_json(),
        "terms_hash": row.terms_hash,
        "milestone_count": len(row.params["milestoneAmounts"]),
        "total": row.total,
        "locked": row.locked,
        "reserved": row.reserved,
        "refunded": row.refunded,
        "created_block": row.created_block,
        "created_tx": row.created_tx,
        "created_at": row.created_at,
        "accepted_at": row.accepted_at,
        "updated_block": row.updated_block,
    }


def list_escrows(
    session: Session,
    chain_id: int,
    tokens: TokenMetadata,
    where: EscrowFilter,
    *,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """Indexed escrows, newest first, with the filter's total for paging; each item's `roles`
    are those of `where.party` (null without it)."""
    conditions = [EscrowRow.chain_id == chain_id]
    for role in ROLES:
        account = getattr(where, role)
        if account is not None:
            conditions.append(getattr(EscrowRow, role) == account)
    if where.party is not None:
        conditions.append(or_(*(getattr(EscrowRow, role) == where.party for role in ROLES)))
    if where.status is not None:
        conditions.append(EscrowRow.status == where.status)
    total = session.scalar(select(func.count()).select_from(EscrowRow).where(*conditions)) or 0
    rows = session.scalars(
        select(EscrowRow)
        .where(*conditions)
        .order_by(EscrowRow.escrow_id.desc())
        .limit(limit)
        .offset(offset)
    )
    party = where.party
    items = [
        {**escrow_summary(r, tokens), "roles": None if party is None else row_roles(r, party)}
        for r in rows
    ]
    next_offset = offset + len(items) if offset + len(items) < total else None
    return {
        "escrows": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": next_offset,
    }


def require_ledger(session: Session, chain_id: int, escrow_id: int) -> EscrowLedger:
    """The escrow's ledger folded from its indexed events; 404 when none are indexed."""
    led = escrow_ledger(session, chain_id, parse_escrow_id(escrow_id))
    if led is None:
        raise NotFoundError("escrow", escrow_id)
    return led
