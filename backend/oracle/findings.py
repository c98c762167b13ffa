"""From stored samples to the oracle's findings: evaluate every escrow that has samples and a
stored terms document, store each finding's evidence bundle, hand over (escrow, kind, period,
evidence hash). The outbox then records and sends them (one report per (escrow, kind, period)),
or records without sending those the contract would refuse (escrow not active)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import EscrowRow, TermsDocument
from backend.errors import QualityEscrowError
from backend.oracle.evaluation import evaluate
from backend.oracle.evidence import evidence_bundle, store_bundle
from backend.oracle.samples import samples_by_escrow
from backend.oracle.terms import parse_terms
from backend.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportFinding:
    escrow_id: int
    kind: int
    period: int
    evidence_hash: str


def find_breaches(
    session: Session, *, chain_id: int, contract: str, oracle: str, now: int
) -> list[ReportFinding]:
    """Every breach the samples show at `now` (chain time), with its evidence stored."""
    escrows = {
        row.escrow_id: row
        for row in session.scalars(select(EscrowRow).where(EscrowRow.chain_id == chain_id))
    }
    out: list[ReportFinding] = []
    for escrow_id, samples in samples_by_escrow(session, chain_id):
        row = escrows.get(escrow_id)
        if row is None or row.accepted_at is None or row.oracle != oracle:
            continue
        document = session.get(TermsDocument, row.terms_hash)
        if document is None:
            logger.warning("escrow %s: terms document %s not stored", escrow_id, row.terms_hash)
            continue
        try:
            terms = parse_terms(json.loads(document.canonical))
        except QualityEscrowError as exc:
            logger.warning("escrow %s: terms cannot be evaluated: %s", escrow_id, exc)
            continue
        for finding in evaluate(terms, row.accepted_at, now, samples).findings:
            bundle = evidence_bundle(
                finding,
                chain_id=chain_id,
                contract=contract,
                escrow_id=escrow_id,
                terms_hash_hex=row.terms_hash,
                oracle=oracle,
            )
            evidence_hash = store_bundle(
                session, bundle, chain_id=chain_id, escrow_id=escrow_id,
                kind=finding.kind, period=finding.period, now=now,
            )
            out.append(ReportFinding(escrow_id, finding.kind, finding.period, evidence_hash))
    return out


def evaluator(services: Services, oracle: str) -> Callable[[Session, int], list[ReportFinding]]:
    """The `evaluate` hook of the oracle worker: findings at the chain's current time."""

    def run(session: Session, chain_id: int) -> list[ReportFinding]:
        now = services.clock.chain_time()
        return find_breaches(
            session, chain_id=chain_id, contract=services.escrow.address, oracle=oracle, now=now
        )

    return run
