"""The relay outbox's writes (`backend/confirmations/outbox.py`): one row per milestone, a live
request refused with 409 `already_confirmed` naming it, also when it was accepted concurrently."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from backend.confirmations.outbox import (
    FAILED,
    AlreadyQueuedError,
    enqueue,
    ensure_not_queued,
)
from backend.db.models import ConfirmationRequest

CHAIN_ID = 31337
SIGNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def accept(session: Session, escrow_id: int = 1, milestone: int = 0, rating: int = 4) -> int:
    """`enqueue` of one confirmation; returns the request's id."""
    return enqueue(
        session, chain_id=CHAIN_ID, escrow_id=escrow_id, milestone=milestone, rating=rating,
        comment_hash="0x" + "00" * 32, deadline=2_000_000_000, signature="0x" + "11" * 65,
        signer=SIGNER,  # type: ignore[arg-type]
    ).id


def test_enqueue_writes_one_pending_row_and_refuses_the_milestone_again_naming_it(
    engine: Engine,
) -> None:
    with Session(engine) as session, session.begin():
        first = accept(session)
        assert accept(session, milestone=1) != first  # another milestone: a row of its own
    with Session(engine) as session, session.begin():
        with pytest.raises(AlreadyQueuedError) as refused:
            accept(session, rating=2)
        with pytest.raises(AlreadyQueuedError):
            ensure_not_queued(session, CHAIN_ID, 1, 0)
    assert (refused.value.code, refused.value.request_id, refused.value.status) == (
        "already_confirmed", first, "pending"
    )
    with Session(engine) as session:
        rows = session.scalars(select(ConfirmationRequest).order_by(ConfirmationRequest.id)).all()
        assert [(r.milestone, r.rating, r.status) for r in rows] == [(0, 4, "pending"),
                                                                     (1, 4, "pending")]


def test_enqueue_revives_a_failed_request_in_place(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        first = accept(session)
        session.get_one(ConfirmationRequest, first).status = FAILED
    with Session(engine) as session, session.begin():
        ensure_not_queued(session, CHAIN_ID, 1, 0)  # a failed request does not hold it
        assert accept(session, rating=1) == first
    with Session(engine) as session:
        row = session.get_one(ConfirmationRequest, first)
        assert (row.status, row.rating, row.transaction_id) == ("pending", 1, None)


def test_a_confirmation_accepted_concurrently_is_refused_as_already_confirmed_naming_it(
    engine: Engine,
) -> None:
    """Two requests for one milestone, both past the early check: the second one's insert waits
    for the first one's transaction and, once it commits, answers 409 `already_confirmed` with
    the first one's id (not a bare conflict, and never a second row)."""
    outcome: dict[str, Any] = {}
    with Session(engine) as first:
        first.begin()
        first_id = accept(first)  # inserted, not committed
        started = threading.Event()

        def second() -> None:
            with Session(engine) as session, session.begin():
                started.set()
                try:
                    outcome["id"] = accept(session, rating=1)
                except Exception as exc:  # handed to the test's thread
                    outcome["error"] = exc

        worker = threading.Thread(target=second)
        worker.start()
        started.wait(10)
        worker.join(0.5)  # waits for the first transaction (a row lock, or the database's lock)
        assert worker.is_alive() and not outcome
        first.commit()
        worker.join(30)
    assert not worker.is_alive()
    error = outcome.get("error")
    assert isinstance(error, AlreadyQueuedError), outcome
    assert (error.request_id, error.status) == (first_id, "pending")
    with Session(engine) as session:
        assert session.scalars(select(ConfirmationRequest.id)).all() == [first_id]
