"""The relay outbox: one `confirmation_request` row per (chain, escrow, milestone), written in the
same database transaction that accepts the confirmation and before anything is sent.

A row moves `pending -> signed -> sent -> mined`, or ends `settled` when someone else's
transaction carrying the client's signed confirmation settled the milestone first (a front-run
relay: the relayer's call then reverts, or is refused in simulation, and `error` names the
transaction that settled it), or `failed` with the decoded reason (or "deadline passed while
unmined; sign again" when its signed deadline passed before any version of its transaction was
mined); the relayer (`backend/confirmations/relayer.py`, a
`backend.outbox.sender.Sender`) moves it, and its signed transactions (the first one, and the
replacements that raised its fees) are `outbox_transaction` rows. `sent` lasts until the receipt
is `ESCROW_CONFIRMATIONS` deep: a reorg before then makes the relayer send it again.

Whether a milestone is "already confirmed" is decided by the live outbox and the chain, never
by a stale row: a `pending`, `signed` or `sent` request holds the milestone (the relayer will
send it, again after a reorg); a `failed` one does not; a `mined` one holds it only as long as
the chain shows the milestone settled, which the caller (`backend/confirmations/verify.py`
`check_open`) checks right after `ensure_not_queued`: a reorg deeper than the confirmation depth
can take a final transaction away, and the milestone may then be confirmed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_typing import ChecksumAddress
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from backend.chain.clock import service_time
from backend.db.models import ConfirmationRequest
from backend.db.session import conflict_insert
from backend.errors import AlreadyDoneError, NotFoundError
from backend.inputs import parse_row_id
from backend.outbox.sender import REORGED
from backend.outbox.versions import versions_json

PENDING, SIGNED, SENT, MINED, FAILED = "pending", "signed", "sent", "mined", "failed"
#: the milestone was settled by someone else's transaction carrying the client's signed
#: confirmation (anyone may submit `confirmWithSig`): done, though not by the relayer
SETTLED = "settled"
STATUSES = (PENDING, SIGNED, SENT, MINED, SETTLED, FAILED)
#: a request in these states holds its milestone: the relayer will (again) send it
LIVE = (PENDING, SIGNED, SENT)

_TABLE = ConfirmationRequest.__table__


class AlreadyQueuedError(AlreadyDoneError):
    """409: a confirmation of this milestone was already accepted (and has not failed)."""

    code = "already_confirmed"

    def __init__(self, request_id: int, status: str, escrow_id: int, milestone: int) -> None:
        self.request_id = request_id
        self.status = status
        super().__init__(
            f"a confirmation of escrow {escrow_id} milestone {milestone} was accepted "
            f"as request {request_id} ({status})"
        )


@dataclass(frozen=True)
class Accepted:
    """A confirmation request as `enqueue` leaves it: `pending`, no transaction signed yet."""

    id: int
    status: str = PENDING
    tx_hash: str | None = None


def find_request(
    session: Session, chain_id: int, escrow_id: int, milestone: int, *, lock: bool = False
) -> ConfirmationRequest | None:
    query = select(ConfirmationRequest).where(
        ConfirmationRequest.chain_id == chain_id,
        ConfirmationRequest.escrow_id == escrow_id,
        ConfirmationRequest.milestone == milestone,
    )
    if lock:  # read afresh, whatever the session holds of it already
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalar(query)


def ensure_not_queued(session: Session, chain_id: int, escrow_id: int, milestone: int) -> None:
    """409 when a live request exists (`LIVE`: pending, signed or sent). A failed one does not
    hold the milestone (`enqueue` revives it); nor does a mined one, whose milestone only the
    chain can say is settled (a reorg deeper than `ESCROW_CONFIRMATIONS` may have taken its
    transaction away): the caller checks the chain next, and a milestone the chain shows settled
    is refused there (409 `not_confirmable`). One indexed read of two columns."""
    found = session.execute(
        select(_TABLE.c.id, _TABLE.c.status).where(
            _TABLE.c.chain_id == chain_id,
            _TABLE.c.escrow_id == escrow_id,
            _TABLE.c.milestone == milestone,
        )
    ).first()
    if found is not None and found.status in LIVE:
        raise AlreadyQueuedError(found.id, found.status, escrow_id, milestone)


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
) -> Accepted:
    """Writes the outbox row, `pending` (or revives a failed one, or a mined one whose
    milestone the caller found unsettled on the chain: its transaction is marked `reorged`).
    Raises `AlreadyQueuedError` (409 `already_confirmed`, naming the request) when a live one
    exists, one accepted concurrently included: the row is inserted with ON CONFLICT DO NOTHING
    on (chain, escrow, milestone), which waits for a concurrent insert of the same milestone to
    commit or roll back; only a milestone that has a row already is read (under a row lock)."""
    stamp = service_time() if now is None else now
    values: dict[str, Any] = {
        "rating": rating,
        "comment_hash": comment_hash,
        "deadline": deadline,
        "signature": signature,
        "signer": signer,
        "status": PENDING,
        "error": None,
        "updated_at": stamp,
    }
    inserted = session.execute(
        conflict_insert(session)(_TABLE)
        .values(chain_id=chain_id, escrow_id=escrow_id, milestone=milestone, created_at=stamp,
                transaction_id=None, **values)
        .on_conflict_do_nothing(index_elements=["chain_id", "escrow_id", "milestone"])
        .returning(_TABLE.c.id)
    ).scalar()
    if inserted is not None:
        return Accepted(inserted)
    row = find_request(session, chain_id, escrow_id, milestone, lock=True)
    assert row is not None, "the insert conflicted on this milestone's row"
    if row.status in LIVE:
        raise AlreadyQueuedError(row.id, row.status, escrow_id, milestone)
    if row.status == MINED and row.transaction is not None:
        # verified unsettled on the chain: a reorg took the final transaction away
        row.transaction.status = REORGED
        row.transaction.error = "no longer on the chain (reorg)"
        row.transaction.updated_at = stamp
    row.transaction = None
    for key, value in values.items():
        setattr(row, key, value)
    session.flush()
    return Accepted(row.id)


def get_request(session: Session, request_id: int) -> ConfirmationRequest:
    row = session.get(ConfirmationRequest, parse_row_id("confirmation request", request_id))
    if row is None:
        raise NotFoundError("confirmation request", request_id)
    return row


def request_json(row: ConfirmationRequest | Accepted, *, full: bool = False) -> dict[str, Any]:
    """`{id, status, tx_hash}`; with `full` (a stored row), everything a client may want to
    know about it, `transactions` listing every version of its transaction (hash, nonce,
    purpose, fees, status, block), oldest first."""
    out: dict[str, Any] = {"id": row.id, "status": row.status, "tx_hash": row.tx_hash}
    if full:
        assert isinstance(row, ConfirmationRequest), "full=True takes a stored row"
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
            transactions=versions_json(object_session(row), row.transaction),
        )
    return out
