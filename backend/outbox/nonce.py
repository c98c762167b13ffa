"""The nonce lock: the next nonce of each account this service sends from lives in `sender_nonce`
and is taken under a row lock, so a nonce is handed out once even if a second sender were
started by mistake."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.db.models import OutboxTransaction, SenderNonce

#: transactions that exist (signed, maybe broadcast) but are not final yet
IN_FLIGHT = ("signed", "sent")


def has_in_flight(session: Session, chain_id: int, account: str) -> bool:
    """Whether the account has a signed or sent transaction that is not final yet."""
    found = session.scalar(
        select(OutboxTransaction.id)
        .where(
            OutboxTransaction.chain_id == chain_id,
            OutboxTransaction.account == account,
            OutboxTransaction.status.in_(IN_FLIGHT),
        )
        .limit(1)
    )
    return found is not None


def take_nonce(session: Session, chain_id: int, account: str, chain_count: int) -> SenderNonce:
    """The account's nonce row, locked for this database transaction (SELECT ... FOR UPDATE; on
    SQLite a no-op UPDATE takes the database write lock first). The caller signs with
    `next_nonce` and increments it in the same database transaction.

    `chain_count` is the node's pending transaction count. With nothing of ours in flight the
    node's count is the truth (it also heals a reset dev chain); with transactions in flight the
    higher of the two is, since signed-but-unsent ones are not known to the node yet."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(SenderNonce)
            .where(SenderNonce.chain_id == chain_id, SenderNonce.account == account)
            .values(next_nonce=SenderNonce.next_nonce)
        )
    row = session.scalar(
        select(SenderNonce)
        .where(SenderNonce.chain_id == chain_id, SenderNonce.account == account)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        row = SenderNonce(chain_id=chain_id, account=account, next_nonce=chain_count)
        session.add(row)
        session.flush()
        return row
    if has_in_flight(session, chain_id, account):
        row.next_nonce = max(row.next_nonce, chain_count)
    else:
        row.next_nonce = chain_count
    return row
