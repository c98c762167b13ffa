"""`GET /api/health`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import ServicesDep
from backend.api.health import check_health
from backend.api.schemas import Health, refusals

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=Health, responses=refusals())
def health(services: ServicesDep) -> dict[str, Any]:
    """`{status, reason, chain_id, contract, head_block, indexed_block, lag_blocks, workers}`:
    `ok` when the node answers, the index is current and every worker of this process runs;
    `degraded` with the reasons otherwise (node unreachable or not answering within
    `ESCROW_HEALTH_NODE_TIMEOUT` seconds, indexer not run, a reset chain, an index lagging the
    head, a worker restarting after an error or off for want of a key, a database that does not
    answer): a node or database that does not answer is `degraded`, never a refusal, and never
    makes this wait longer than that."""
    return check_health(services).to_json()
