"""Accepting a signed confirmation: verify it, keep its review, write the outbox row; all in the
caller's database transaction, so either everything is stored or nothing is."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.confirmations.chain_reader import ChainReader
from backend.confirmations.outbox import Accepted, enqueue
from backend.confirmations.reviews import store_review
from backend.confirmations.verify import ConfirmationInput, verify


def submit_confirmation(
    session: Session, chain: ChainReader, inp: ConfirmationInput, signature: str
) -> Accepted:
    """Verifies `signature` over `inp` (`backend.confirmations.verify.verify`), keeps the
    review and writes the outbox row; raises what those raise (`AlreadyQueuedError` 409 for a
    milestone with a live request)."""
    verified = verify(session, chain, inp, signature)
    confirmation = verified.prepared.confirmation
    store_review(session, verified.prepared.review)
    return enqueue(
        session,
        chain_id=chain.chain_id,
        escrow_id=confirmation.escrow_id,
        milestone=confirmation.milestone,
        rating=confirmation.rating,
        comment_hash=verified.prepared.review.comment_hash_hex,
        deadline=confirmation.deadline,
        signature="0x" + verified.signature.hex(),
        signer=verified.signer,
    )
