"""Analytics: `GET /api/providers/{address}/scorecard` and `GET /api/escrows/{id}/kpis`
(definitions in `backend.oracle.scorecard`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import EscrowKpis, ProviderScorecard, refusals
from backend.chain.types import MAX_PERIOD
from backend.inputs import Address, EscrowId
from backend.oracle.scorecard import (
    DEFAULT_KPI_PAGE,
    MAX_KPI_PAGE,
    escrow_kpis,
    provider_scorecard,
)

router = APIRouter(prefix="/api", tags=["analytics"])


@router.get(
    "/providers/{address}/scorecard",
    response_model=ProviderScorecard,
    responses=refusals(400, 503),
)
def get_scorecard(
    address: Address, services: ServicesDep, session: SessionDep, tokens: TokensDep
) -> dict[str, Any]:
    """The provider's escrows, ratings, deliveries, breaches, refunds and per-KPI series; 400
    for a malformed address; a provider with no escrow gets 200 with zeros."""
    now = services.clock.now_or_service_time()
    return provider_scorecard(session, services.chain_id, address, tokens, now,
                              min_period_seconds=services.settings.min_period_seconds)


@router.get(
    "/escrows/{escrow_id}/kpis", response_model=EscrowKpis, responses=refusals(404, 409, 422)
)
def get_escrow_kpis(
    escrow_id: EscrowId,
    services: ServicesDep,
    session: SessionDep,
    from_period: Annotated[int | None, Query(
        ge=0, le=MAX_PERIOD,
        description="The first period of the page; unset: the latest `limit` periods")
    ] = None,
    limit: Annotated[int, Query(
        ge=1, le=MAX_KPI_PAGE, description="The most periods of the page")
    ] = DEFAULT_KPI_PAGE,
) -> dict[str, Any]:
    """One page of per-period KPI values, thresholds and verdicts (pass/fail/missing), the
    incident rule's state and the findings of those periods (`from_period`, at most 500
    periods, by default the latest 100; `next_from_period` / `previous_from_period` page on);
    404 for an unknown escrow, 409 when its terms are not stored, 422 for a page out of range.
    Terms whose period is below ESCROW_MIN_PERIOD_SECONDS answer with `evaluation_error`."""
    return escrow_kpis(session, services.chain_id, escrow_id,
                       services.clock.now_or_service_time(), from_period=from_period,
                       limit=limit, min_period_seconds=services.settings.min_period_seconds)
