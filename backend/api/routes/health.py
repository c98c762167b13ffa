"""`GET /api/health`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import ServicesDep, SessionDep
from backend.api.health import check_health
from backend.api.schemas import Health, refusals

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=Health, responses=refusals())
def health(services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    """`{status, reason, chain_id, contract, head_block, indexed_block, lag_blocks}`: `ok` when the
    node answers and the index is current; `degraded` with the reasons otherwise (node
    unreachable, indexer not run, a reset chain, an index lagging the head): a node that does
    not answer is `degraded`, never a refusal."""
    return check_health(services, session).to_json()
