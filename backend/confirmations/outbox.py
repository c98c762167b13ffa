"""The relay outbox: one `confirmation_request` row per (chain, escrow, milestone), written in the
same database transaction that accepts the confirmation and before anything is sent.

A row moves `pending -> signed -> sent -> mined`, or ends `failed` with the decoded reason. The
relayer's next nonce lives in `sender_nonce` and is taken under a row lock, so a nonce is handed
out once even if a second relayer were started by mistake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from eth_typing import ChecksumAddress
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.models import ConfirmationRequest, SenderNonce
from backend.errors import AlreadyDoneError, NotFoundError

PENDING, SIGNED, SENT, MINED, FAILED = "pending", "signed", "sent", "mined", "failed"
#: rows whose transaction exists (signed, maybe broadcast) but is not final yet
IN_FLIGHT = (SIGNED, SENT)


class AlreadyQueuedError(AlreadyDoneError):
    """409: a confirmation of this milestone was already accepted (and has not failed)."""

    code = "already_confirmed"

    def __init__(self, row: ConfirmationRequest) -> None:
        self.request_id = row.id
        self.status = row.status
        super().__init__(
            f"a confirmation of escrow {row.escrow_id} milestone {row.milestone} was accepted "
            f"as request {row.id} ({row.status})"
        )


def find_request(
    session: Session, chain_id: int, escrow_id: int, milestone: int, *, lock: bool = False
) -> ConfirmationRequest | None:
    query = select(ConfirmationRequest).where(
        ConfirmationRequest.chain_id == chain_id,
        ConfirmationRequest.escrow_id == escrow_id,
        ConfirmationRequest.milestone == milestone,
    )
    return session.scalar(query.with_for_update() if lock else query)


def ensure_not_queued(
    session: Session, chain_id: int, escrow_id: int, milestone: int
) -> ConfirmationRequest | None:
    """409 when a live request exists; a failed one is returned, to be replaced."""
    row = find_request(session, chain_id, escrow_id, milestone)
    if row is not None and row.status != FAILED:
        raise AlreadyQueuedError(row)
    return row


def enqueue(
    session: Session,
    *,
    chain_id: int,
    escrow_id: int,
    milestone: int,
    rating: int,
    comment_hash: str,
    deadline: int,
    signature: str,
    signer: ChecksumAddress,
    now: int | None = None,
) -> ConfirmationRequest:
    """Writes the outbox row (or revives a failed one); 409 if a live one exists."""
    stamp = int(time.time()) if now is None else now
    values: dict[str, Any] = {
        "rating": rating,
        "comment_hash": comment_hash,
        "deadline": deadline,
        "signature": signature,
        "signer": signer,
        "status": PENDING,
        "nonce": None,
        "raw_tx": None,
        "tx_hash": None,
        "error": None,
        "updated_at": stamp,
    }
    row = ensure_not_queued(session, chain_id, escrow_id, milestone)
    if row is None:
        row = ConfirmationRequest(
            chain_id=chain_id, escrow_id=escrow_id, milestone=milestone, created_at=stamp, **values
        )
        session.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
    try:
        session.flush()
    except IntegrityError as exc:  # the same confirmation, accepted concurrently
        raise AlreadyDoneError(
            f"a confirmation of escrow {escrow_id} milestone {milestone} was accepted"
        ) from exc
    return row


def get_request(session: Session, request_id: int) -> ConfirmationRequest:
    row = session.get(ConfirmationRequest, request_id) if 0 < request_id < 2**63 else None
    if row is None:
        raise NotFoundError("confirmation request", request_id)
    return row


def request_json(row: ConfirmationRequest, *, full: bool = False) -> dict[str, Any]:
    """`{id, status, tx_hash}`; with `full`, everything a client may want to know about it."""
    out: dict[str, Any] = {"id": row.id, "status": row.status, "tx_hash": row.tx_hash}
    if full:
        out.update(
            chain_id=row.chain_id,
            escrow_id=row.escrow_id,
            milestone=row.milestone,
            rating=row.rating,
            comment_hash=row.comment_hash,
            deadline=row.deadline,
            signer=row.signer,
            nonce=row.nonce,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    return out


# ------------------------------------------------------------------ the relayer's queue


def rows_in(session: Session, chain_id: int, status: str, *, limit: int = 100) -> list[int]:
    """Ids of the rows in `status`: signed ones in nonce order, the others oldest first."""
    order = ConfirmationRequest.nonce if status == SIGNED else ConfirmationRequest.id
    ids = session.scalars(
        select(ConfirmationRequest.id)
        .where(ConfirmationRequest.chain_id == chain_id, ConfirmationRequest.status == status)
        .order_by(order, ConfirmationRequest.id)
        .limit(limit)
    )
    return list(ids)


def lock_row(session: Session, request_id: int, status: str) -> ConfirmationRequest | None:
    """The row under a row lock, if it is still in `status` (another pass may have moved it)."""
    row = session.scalar(
        select(ConfirmationRequest)
        .where(ConfirmationRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return row if row is not None and row.status == status else None


def has_in_flight(session: Session, chain_id: int) -> bool:
    found = session.scalar(
        select(ConfirmationRequest.id)
        .where(
            ConfirmationRequest.chain_id == chain_id,
            ConfirmationRequest.status.in_(IN_FLIGHT),
        )
        .limit(1)
    )
    return found is not None


def lock_nonce(
    session: Session,
    chain_id: int,
    account: str,
    chain_count: int,
    in_flight: Callable[[], bool],
) -> SenderNonce:
    """The account's nonce row, locked for this transaction (SELECT ... FOR UPDATE; on SQLite a
    no-op UPDATE takes the database write lock first).

    `chain_count` is the node's pending transaction count. With nothing of ours in flight the
    node's count is the truth (it also heals a reset dev chain); with transactions in flight the
    higher of the two is, since signed-but-unsent ones are not known to the node yet. Each sender
    (relayer, oracle) says what of its own is in flight."""
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
    if in_flight():
        row.next_nonce = max(row.next_nonce, chain_count)
    else:
        row.next_nonce = chain_count
    return row


def take_nonce(session: Session, chain_id: int, account: str, chain_count: int) -> SenderNonce:
    """The relayer account's nonce row, locked (see `lock_nonce`)."""
    return lock_nonce(
        session, chain_id, account, chain_count, lambda: has_in_flight(session, chain_id)
    )
