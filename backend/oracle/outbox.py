"""The oracle's outbox: one `breach_submission` row per (chain, escrow, kind, period), written
before anything is sent.

A report moves `pending -> signed -> sent -> mined`, ends `failed` with the decoded reason, or is
recorded `not_sent` when the contract would refuse it (the escrow is not Active), or `off_chain`
when it would reserve nothing (`reserve_bounds`: the refund cap `maxRefundBps` used up, nothing
locked, or the kind's refund rounding to 0): the finding and its evidence bundle stay recorded
here, and no gas is paid for it. After it is
mined its `follow_up` moves `none -> finalize_signed -> finalize_sent -> done`, or
`challenged -> resolved` when the provider challenged and the arbiter decided. A mined report
the chain no longer has (a reorg deeper than `ESCROW_CONFIRMATIONS`) goes back to `pending` and
is reported anew: what is reported is the chain's to say, never a stored row's. The submitter
(`backend/oracle/submitter.py`, a `backend.outbox.sender.Sender`) moves it; each of its two
transactions is an `outbox_transaction` row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.chain.types import BPS, BreachKind, EscrowParams, EscrowView
from backend.db.models import BreachSubmission, EscrowRow, EventLog

PENDING, SIGNED, SENT, MINED, FAILED, NOT_SENT, OFF_CHAIN = (
    "pending", "signed", "sent", "mined", "failed", "not_sent", "off_chain"
)
STATUSES = (PENDING, SIGNED, SENT, MINED, FAILED, NOT_SENT, OFF_CHAIN)
#: follow-up states of a mined report
NONE, FINALIZE_SIGNED, FINALIZE_SENT, DONE = "none", "finalize_signed", "finalize_sent", "done"
CHALLENGED, RESOLVED, FOLLOW_FAILED = "challenged", "resolved", "failed"
#: follow-ups still to be acted on or watched
OPEN_FOLLOW_UPS = (NONE, FINALIZE_SIGNED, FINALIZE_SENT, CHALLENGED)


class Finding(Protocol):
    """What the evaluation hands over: a breach of one (kind, period), its evidence's hash."""

    @property
    def escrow_id(self) -> int: ...

    @property
    def kind(self) -> int: ...

    @property
    def period(self) -> int: ...

    @property
    def evidence_hash(self) -> str: ...


def find_submission(
    session: Session, chain_id: int, escrow_id: int, kind: int, period: int
) -> BreachSubmission | None:
    return session.scalar(
        select(BreachSubmission).where(
            BreachSubmission.chain_id == chain_id,
            BreachSubmission.escrow_id == escrow_id,
            BreachSubmission.kind == kind,
            BreachSubmission.period == period,
        )
    )


def _refusal(escrow: EscrowRow | None, oracle: str) -> str | None:
    """Why the contract would refuse a report now, or None."""
    if escrow is None:
        return "escrow not indexed"
    if escrow.status != "active":
        return f"escrow is {escrow.status}, not active"
    if escrow.oracle.lower() != oracle.lower():
        return f"escrow's oracle is {escrow.oracle}, not {oracle}"
    return None


def enqueue_reports(
    session: Session, chain_id: int, findings: Iterable[Finding], oracle_address: str,
    now: int,
) -> int:
    """Writes one outbox row per new (escrow, kind, period); returns how many were written.
    A finding already queued (in any state) is left alone; one the contract would refuse is
    recorded `not_sent` with the reason and never sent."""
    written = 0
    for finding in findings:
        key = (finding.escrow_id, int(finding.kind), int(finding.period))
        if find_submission(session, chain_id, *key) is not None:
            continue
        reason = _refusal(session.get(EscrowRow, (chain_id, key[0])), oracle_address)
        row = BreachSubmission(
            chain_id=chain_id,
            escrow_id=key[0],
            kind=key[1],
            period=key[2],
            evidence_hash=finding.evidence_hash.lower(),
            oracle=oracle_address,
            status=PENDING if reason is None else NOT_SENT,
            follow_up=NONE,
            error=reason,
            created_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # queued concurrently by another pass
            continue
        written += 1
    return written


# ------------------------------------------------------------------ what a report reserves


def kind_share(params: EscrowParams, kind: int) -> int:
    """What a report of `kind` reserves at most, in base units: the kind's refund bps of the
    escrow's total, rounded down (the contract's `kindBps * total / BPS`); 0 for a kind the
    contract does not know (it would revert)."""
    by_kind: dict[int, int] = {
        BreachKind.KPI_BELOW_STANDARD: params.terms.breach_refund_bps,
        BreachKind.CONSECUTIVE_UNDERPERFORMANCE: params.terms.streak_refund_bps,
        BreachKind.MAJOR_INCIDENT: params.terms.incident_refund_bps,
    }
    bps = by_kind.get(kind, 0)
    return bps * params.total // BPS


def reserve_bounds(
    params: EscrowParams, view: EscrowView, kind: int, in_flight: Iterable[int] = ()
) -> tuple[int, int]:
    """(least, most) a `reportBreach` of `kind` would reserve, by the contract's
    `_reserveFor`: `min(kind share, cap left, locked)`, the cap being `maxRefundBps * total /
    BPS` less what was refunded and what open reports hold (`view`: `getEscrow` now). Reports
    of the escrow still in flight (`in_flight`: their kinds, in order) may or may not be on the
    chain yet: `most` assumes they are (counted in `view`), `least` that none is and that each
    reserves all it can. `most == 0`: the report would reserve nothing, whatever lands first."""
    cap = params.terms.max_refund_bps * params.total // BPS
    cap_left = max(0, cap - view.refunded - view.reserved)
    locked = view.locked
    most = min(kind_share(params, kind), cap_left, locked)
    for other in in_flight:
        taken = min(kind_share(params, other), cap_left, locked)
        cap_left, locked = cap_left - taken, locked - taken
    return min(kind_share(params, kind), cap_left, locked), most


def nothing_reserved_reason(params: EscrowParams, view: EscrowView, kind: int) -> str:
    """Why a report of `kind` would reserve nothing (for the row's `error`)."""
    if kind_share(params, kind) == 0:
        return (f"not sent: it would reserve nothing (the kind's refund of the total "
                f"{params.total} rounds to 0)")
    if view.locked == 0:
        return "not sent: it would reserve nothing (nothing is locked in the escrow any more)"
    return ("not sent: it would reserve nothing (the refund cap maxRefundBps is used up by "
            "refunds and open reports)")


# ------------------------------------------------------------------ what the index knows


def _breach_events(session: Session, chain_id: int, escrow_id: int) -> list[EventLog]:
    return list(
        session.scalars(
            select(EventLog)
            .where(
                EventLog.chain_id == chain_id,
                EventLog.escrow_id == escrow_id,
                EventLog.event.in_(("BreachReported", "BreachChallenged", "BreachSettled")),
            )
            .order_by(EventLog.block_number, EventLog.log_index)
        )
    )


def indexed_breach_id(
    session: Session, chain_id: int, escrow_id: int, kind: int, period: int
) -> int | None:
    """The id of the indexed `BreachReported` of that (kind, period), if any."""
    for log in _breach_events(session, chain_id, escrow_id):
        args = log.args
        if (
            log.event == "BreachReported"
            and int(args["kind"]) == kind
            and int(args["period"]) == period
        ):
            return int(args["breachId"])
    return None
