"""`GET /api/escrows/{id}/breaches`: every breach of an escrow, joining what the chain holds
(indexed `BreachReported` and later events), the stored evidence bundles and the oracle's
outbox, so that findings recorded but never sent (the escrow had closed) or reported with
nothing reserved (the refund cap was used up) are shown too, with a note saying why; and, when
the oracle (running in this process on this database) could not evaluate the escrow on its last
attempt, `evaluation_error` says why (`backend.oracle.findings.evaluation_failure`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import BreachSubmission, EvidenceBundle
from backend.escrows.listing import require_ledger
from backend.index.ledger import BreachLedger
from backend.oracle.findings import evaluation_failure

NOTE_NOTHING_RESERVED = (
    "reported on-chain with nothing reserved: the refund cap (maxRefundBps) or the locked "
    "amount left 0; the report stands as evidence"
)
NOTE_NOT_SENT = "recorded, not sent: the contract only accepts reports while the escrow is Active"
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


def escrow_breaches(session: Session, chain_id: int, escrow_id: int) -> dict[str, Any]:
    """The escrow's breaches ordered by (period, kind), and the oracle's failure to evaluate
    it if its last attempt failed (`evaluation_error`: `{error, first_failed_at,
    last_failed_at, attempts}`, else null; the oracle retries on every pass); 404 for an
    escrow not indexed."""
    led = require_ledger(session, chain_id, escrow_id)
    rows: dict[tuple[int, int], _Row] = {}

    def row(kind: int, period: int) -> _Row:
        return rows.setdefault((kind, period), _Row(kind, period))

    for b in led.breaches:
        r = row(b.kind, b.period)
        r.chain, r.evidence_hash = b, b.evidence_hash.lower()
    for s in session.scalars(select(BreachSubmission).where(
            BreachSubmission.chain_id == chain_id, BreachSubmission.escrow_id == escrow_id)):
        r = row(s.kind, s.period)
        r.submission = s
        r.evidence_hash = r.evidence_hash or s.evidence_hash.lower()
    bundles: dict[str, str] = {}
    for e in session.scalars(select(EvidenceBundle).where(
            EvidenceBundle.chain_id == chain_id, EvidenceBundle.escrow_id == escrow_id)):
        bundles[e.evidence_hash] = e.canonical
        r = row(e.kind, e.period)
        r.evidence_hash = r.evidence_hash or e.evidence_hash
    entries = [_entry(r, bundles) for _, r in sorted(rows.items(), key=lambda kv: kv[0][::-1])]
    failure = evaluation_failure(session, chain_id, escrow_id)
    return {"escrow_id": escrow_id, "breaches": entries,
            "evaluation_error": None if failure is None else failure.as_json()}
