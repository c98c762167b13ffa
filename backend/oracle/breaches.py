"""`GET /api/escrows/{id}/breaches`: every breach of an escrow, joining what the chain holds
(indexed `BreachReported` and later events), the stored evidence bundles and the oracle's
outbox, so that findings recorded but never sent (the escrow had closed) or reported with
nothing reserved (the refund cap was used up) are shown too, with a note saying why; and, when
the oracle (running in this process on this database) could not evaluate the escrow on its last
attempt, `evaluation_error` says why (`backend.oracle.findings.evaluation_failure`). Findings
the oracle recorded `off_chain` (they would have reserved nothing, so no gas was paid) are
listed with their evidence and a note. One page of periods at a time (`from_period`, `limit`),
so the answer is bounded whatever the escrow's age."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import BreachSubmission, EvidenceBundle
from backend.errors import OutOfRangeError
from backend.escrows.listing import require_ledger
from backend.index.ledger import BreachLedger
from backend.oracle.findings import evaluation_failure

NOTE_NOTHING_RESERVED = (
    "reported on-chain with nothing reserved: the refund cap (maxRefundBps) or the locked "
    "amount left 0; the report stands as evidence"
)
NOTE_NOT_SENT = "recorded, not sent: the contract only accepts reports while the escrow is Active"
NOTE_OFF_CHAIN = (
    "recorded off-chain with its evidence, not sent: the report would reserve nothing (refund "
    "cap used up, nothing locked, or a refund rounding to 0), so no gas was paid for it"
)
NOTE_PENDING = "recorded, awaiting inclusion on-chain"
NOTE_UNSUBMITTED = "recorded, not submitted"


@dataclass
class _Row:
    kind: int
    period: int
    chain: BreachLedger | None = None
    submission: BreachSubmission | None = None
    evidence_hash: str | None = None


def _submission_json(s: BreachSubmission) -> dict[str, Any]:
    return {"status": s.status, "tx_hash": s.tx_hash, "follow_up": s.follow_up,
            "error": s.error, "updated_at": s.updated_at}


def _note(row: _Row) -> str | None:
    if row.chain is not None:
        return NOTE_NOTHING_RESERVED if row.chain.reserve == 0 else None
    if row.submission is None:
        return NOTE_UNSUBMITTED
    if row.submission.status == "off_chain":
        detail = f" ({row.submission.error})" if row.submission.error else ""
        return NOTE_OFF_CHAIN + detail
    if row.submission.status in ("not_sent", "failed"):
        detail = f" ({row.submission.error})" if row.submission.error else ""
        return NOTE_NOT_SENT + detail
    return NOTE_PENDING


def _entry(row: _Row, bundles: dict[str, str]) -> dict[str, Any]:
    b = row.chain
    text = bundles.get(row.evidence_hash) if row.evidence_hash else None
    return {
        "kind": row.kind,
        "period": row.period,
        "on_chain": b is not None,
        "breach_id": None if b is None else b.breach_id,
        "state": None if b is None else b.state.name.lower(),
        "reserved": "0" if b is None else str(b.reserve),
        "refunded": "0" if b is None else str(b.to_client),
        "reported_at": None if b is None else b.reported_at,
        "reported_tx": None if b is None else b.reported_tx,
        "challenged_at": None if b is None else b.challenged_at,
        "settled_at": None if b is None else b.settled_at,
        "evidence_hash": row.evidence_hash,
        "evidence": None if text is None else json.loads(text),
        "submission": None if row.submission is None else _submission_json(row.submission),
        "note": _note(row),
    }


#: periods of one page of `GET /api/escrows/{id}/breaches`: by default, and at most
DEFAULT_BREACH_PAGE, MAX_BREACH_PAGE = 50, 200


def _next_period(session: Session, chain_id: int, escrow_id: int, led_periods: list[int],
                 after: int) -> int | None:
    """The first period after `after` with a breach on chain, an outbox row or a bundle."""
    found = [p for p in led_periods if p > after]
    for model in (BreachSubmission, EvidenceBundle):
        value = session.scalar(select(func.min(model.period)).where(
            model.chain_id == chain_id, model.escrow_id == escrow_id, model.period > after))
        if value is not None:
            found.append(int(value))
    return min(found, default=None)


def escrow_breaches(
    session: Session, chain_id: int, escrow_id: int, *, from_period: int = 0,
    limit: int = DEFAULT_BREACH_PAGE,
) -> dict[str, Any]:
    """The escrow's breaches of periods `from_period` to `from_period + limit - 1` (`limit` 1
    to `MAX_BREACH_PAGE`, 422 otherwise) ordered by (period, kind), `next_from_period` the
    next period with one (null: none), and the oracle's failure to evaluate it if its last
    attempt failed (`evaluation_error`: `{error, first_failed_at, last_failed_at, attempts}`,
    else null; the oracle retries on every pass); 404 for an escrow not indexed. Only the
    page's outbox rows and evidence bundles are read."""
    if not 1 <= limit <= MAX_BREACH_PAGE:
        raise OutOfRangeError("limit", limit, f"1 to {MAX_BREACH_PAGE} periods")
    if from_period < 0:
        raise OutOfRangeError("from_period", from_period, "a period number, 0 or more")
    led = require_ledger(session, chain_id, escrow_id)
    last = from_period + limit - 1
    rows: dict[tuple[int, int], _Row] = {}

    def row(kind: int, period: int) -> _Row:
        return rows.setdefault((kind, period), _Row(kind, period))

    for b in led.breaches:
        if from_period <= b.period <= last:
            r = row(b.kind, b.period)
            r.chain, r.evidence_hash = b, b.evidence_hash.lower()
    for s in session.scalars(select(BreachSubmission).where(
            BreachSubmission.chain_id == chain_id, BreachSubmission.escrow_id == escrow_id,
            BreachSubmission.period.between(from_period, last))):
        r = row(s.kind, s.period)
        r.submission = s
        r.evidence_hash = r.evidence_hash or s.evidence_hash.lower()
    bundles: dict[str, str] = {}
    for e in session.scalars(select(EvidenceBundle).where(
            EvidenceBundle.chain_id == chain_id, EvidenceBundle.escrow_id == escrow_id,
            EvidenceBundle.period.between(from_period, last))):
        bundles[e.evidence_hash] = e.canonical
        r = row(e.kind, e.period)
        r.evidence_hash = r.evidence_hash or e.evidence_hash
    entries = [_entry(r, bundles) for _, r in sorted(rows.items(), key=lambda kv: kv[0][::-1])]
    failure = evaluation_failure(session, chain_id, escrow_id)
    following = _next_period(session, chain_id, escrow_id, [b.period for b in led.breaches],
                             last)
    return {"escrow_id": escrow_id, "from_period": from_period, "limit": limit,
            "next_from_period": following, "breaches": entries,
            "evaluation_error": None if failure is None else failure.as_json()}
