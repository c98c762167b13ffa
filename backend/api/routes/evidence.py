"""Evidence bundles and breach reports: `GET /api/evidence/{hash}` and
`GET /api/escrows/{id}/breaches`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import EscrowBreaches, raw_body, refusals
from backend.chain.types import MAX_PERIOD
from backend.inputs import EscrowId
from backend.oracle.breaches import DEFAULT_BREACH_PAGE, MAX_BREACH_PAGE, escrow_breaches
from backend.oracle.evidence import bundle_text

router = APIRouter(prefix="/api", tags=["evidence"])


@router.get(
    "/evidence/{evidence_hash}",
    response_class=Response,
    responses={
        **raw_body(
            "application/json",
            "The evidence bundle as its RFC 8785 canonical bytes (docs/interface.md section "
            "3.3): keccak256 of the body is `evidence_hash`",
            {"type": "object"},
        ),
        **refusals(400, 404),
    },
)
def get_evidence(evidence_hash: str, session: SessionDep) -> Response:
    """The stored bundle as its RFC 8785 canonical JSON: the body re-hashes (keccak256) to
    `evidence_hash`, the value reported on-chain."""
    return Response(bundle_text(session, evidence_hash), media_type="application/json")


@router.get(
    "/escrows/{escrow_id}/breaches", response_model=EscrowBreaches,
    responses=refusals(404, 422),
)
def get_breaches(
    escrow_id: EscrowId,
    services: ServicesDep,
    session: SessionDep,
    from_period: Annotated[int, Query(
        ge=0, le=MAX_PERIOD, description="The first period of the page")
    ] = 0,
    limit: Annotated[int, Query(
        ge=1, le=MAX_BREACH_PAGE, description="The most periods of the page")
    ] = DEFAULT_BREACH_PAGE,
) -> dict[str, Any]:
    """The escrow's breach reports with their evidence bundles and status, one page of periods
    at a time (`from_period`, at most 200 periods, default 50; `next_from_period` is the next
    period with a breach): on-chain reports (state, `reserved`, `refunded`) and findings
    recorded but not sent (`not_sent`, or `off_chain`: it would have reserved nothing), each
    with a `note` when nothing was reserved or nothing was sent."""
    return escrow_breaches(session, services.chain_id, escrow_id, from_period=from_period,
                           limit=limit)
