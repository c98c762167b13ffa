"""Evidence bundles: the JSON document behind a breach report's `evidenceHash`,
hashed like the terms (keccak256 of its RFC 8785 canonical form), stored content-addressed.

Format version 2 states, for each KPI result, how its value is computed (`method`), how many
samples it is of (`sample_count`) and the fewest it is judged on (`min_samples`; fewer make
the KPI `missing`). Version 1 bundles (stored before) lack these three keys and stay valid: a
bundle is never rewritten, its hash is on-chain.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.canonical import canonical_json, terms_hash
from backend.chain.clock import service_time
from backend.db.models import EvidenceBundle
from backend.errors import NotFoundError
from backend.inputs import parse_hash
from backend.oracle.evaluation import Finding, KpiResult

FORMAT = "quality-escrow/evidence"
FORMAT_VERSION = 2


def _kpi_json(k: KpiResult) -> dict[str, Any]:
    return {
        "id": k.id,
        "period": k.period,
        "aggregate": k.aggregate,
        "op": k.op,
        "threshold": k.threshold,
        "value": k.value,
        "verdict": k.verdict,
        "method": k.method,
        "sample_count": len(k.samples),
        "min_samples": k.min_samples,
        "samples": [
            {"kpi": s.kpi, "value": s.value, "observed_at": s.observed_at} for s in k.samples
        ],
    }


def evidence_bundle(
    finding: Finding,
    *,
    chain_id: int,
    contract: str,
    escrow_id: int,
    terms_hash_hex: str,
    oracle: str,
) -> dict[str, Any]:
    """The bundle of one finding: escrow, period bounds, terms hash, every raw sample used and
    each KPI's computed value against its threshold (with the method, the sample count and the
    minimum count), the rule that fired, the oracle."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "chain_id": chain_id,
        "contract": to_checksum_address(contract),
        "escrow_id": escrow_id,
        "kind": finding.kind,
        "period": finding.period,
        "period_start": finding.period_start,
        "period_end": finding.period_end,
        "terms_hash": terms_hash_hex.lower(),
        "oracle": to_checksum_address(oracle),
        "rule": finding.rule,
        "kpis": [_kpi_json(k) for k in finding.kpis],
    }


def bundle_hash(bundle: dict[str, Any]) -> str:
    """`evidenceHash` as 0x hex: keccak256 of the canonical JSON."""
    return "0x" + terms_hash(bundle).hex()


def store_bundle(
    session: Session,
    bundle: dict[str, Any],
    *,
    chain_id: int,
    escrow_id: int,
    kind: int,
    period: int,
    now: int | None = None,
) -> str:
    """Stores the bundle's canonical text under its hash (idempotent); returns the hash."""
    canonical = canonical_json(bundle)
    key = "0x" + terms_hash(bundle).hex()
    if session.get(EvidenceBundle, key) is None:
        row = EvidenceBundle(
            evidence_hash=key, chain_id=chain_id, escrow_id=escrow_id, kind=kind, period=period,
            canonical=canonical.decode("utf-8"),
            created_at=service_time() if now is None else now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # stored at the same moment elsewhere: same content
            pass
    return key


def bundle_text(session: Session, evidence_hash: str) -> str:
    """The stored canonical text; 400 for a malformed hash, 404 if unknown."""
    key = parse_hash("evidence_hash", evidence_hash)
    row = session.get(EvidenceBundle, key)
    if row is None:
        raise NotFoundError("evidence bundle", key)
    return row.canonical
