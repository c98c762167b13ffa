"""Evidence bundles and breach reports: `GET /api/evidence/{hash}` and
`GET /api/escrows/{id}/breaches`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from backend.api.deps import ServicesDep, SessionDep
from backend.inputs import EscrowId
from backend.oracle.breaches import escrow_breaches
from backend.oracle.evidence import bundle_text

router = APIRouter(tags=["evidence"])


@router.get("/api/evidence/{evidence_hash}")
def get_evidence(evidence_hash: str, session: SessionDep) -> Response:
    """The stored bundle as its RFC 8785 canonical JSON: the body re-hashes (keccak256) to
    `evidence_hash`, the value reported on-chain."""
    return Response(bundle_text(session, evidence_hash), media_type="application/json")


@router.get("/api/escrows/{escrow_id}/breaches")
def get_breaches(escrow_id: EscrowId, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    """The escrow's breach reports with their evidence bundles and status: on-chain reports
    (state, `reserved`, `refunded`) and findings recorded but not sent, each with a `note`
    when nothing was reserved or nothing was sent."""
    return escrow_breaches(session, services.chain_id, escrow_id)
