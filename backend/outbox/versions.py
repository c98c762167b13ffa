"""The versions of an outbox row's transaction: everything signed for one row and phase shares
`first_id` (`OutboxTransaction`), and the versions of one nonce (the original and the
replacements that raised its fees, or a nonce filler) are those of them with that nonce. At most
one version of a nonce is ever mined; the sender settles the row by whichever it is."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.db.models import OutboxTransaction

#: the purpose of a nonce filler: a no-op transfer to the sender itself that takes the nonce of
#: a transaction which can no longer do anything but revert (its signed deadline passed)
FILL = "fill"


def history(session: Session, tx: OutboxTransaction) -> list[OutboxTransaction]:
    """Every transaction signed for the outbox row and phase `tx` belongs to, oldest first."""
    return histories_of(session, [tx])[tx.root_id]


def histories_of(
    session: Session, txs: list[OutboxTransaction]
) -> dict[int, list[OutboxTransaction]]:
    """`history` of each of `txs`, in one query, keyed by their `root_id`."""
    roots = sorted({tx.root_id for tx in txs})
    out: dict[int, list[OutboxTransaction]] = {root: [] for root in roots}
    if not roots:
        return out
    for tx in session.scalars(
        select(OutboxTransaction)
        .where(or_(OutboxTransaction.id.in_(roots), OutboxTransaction.first_id.in_(roots)))
        .order_by(OutboxTransaction.id)
    ):
        out[tx.root_id].append(tx)
    return out


def nonce_versions(session: Session, tx: OutboxTransaction) -> list[OutboxTransaction]:
    """`tx` and the other versions of its nonce (same row and phase), oldest first."""
    return [t for t in history(session, tx) if t.nonce == tx.nonce]


def version_json(tx: OutboxTransaction) -> dict[str, Any]:
    """One version as the status JSON shows it (fees in wei, decimal strings)."""
    return {
        "tx_hash": tx.tx_hash,
        "nonce": tx.nonce,
        "purpose": tx.purpose,
        "status": tx.status,
        "max_fee_per_gas": tx.max_fee_per_gas,
        "max_priority_fee_per_gas": tx.max_priority_fee_per_gas,
        "block_number": tx.block_number,
        "block_hash": tx.block_hash,
        "error": tx.error,
        "created_at": tx.created_at,
    }


def versions_json(session: Session | None, tx: OutboxTransaction | None) -> list[dict[str, Any]]:
    """Every transaction of the row's phase that `tx` belongs to, oldest first (only `tx` when
    there is no session to read the others from)."""
    if tx is None:
        return []
    found = [tx] if session is None else history(session, tx)
    return [version_json(t) for t in found]
