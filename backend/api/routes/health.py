"""`GET /api/health`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from backend.api.deps import ServicesDep, SessionDep
from backend.db.models import ChainCursor

router = APIRouter(tags=["health"])


@router.get("/api/health")
def health(services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    """`ok` when the node answers and the index is current; `degraded` with a reason otherwise."""
    reasons: list[str] = []
    head: int | None = None
    try:
        head = int(services.w3.eth.block_number)
    except Exception as exc:  # the node is down or unreachable
        reasons.append(f"node unreachable: {exc}")
    cursor = session.scalar(
        select(ChainCursor).where(
            ChainCursor.chain_id == services.chain_id,
            ChainCursor.contract == services.escrow.address,
        )
    )
    indexed = cursor.block_number if cursor else None
    if cursor is not None and cursor.reset_detected:
        reasons.append(cursor.reset_detected)
    if indexed is None:
        reasons.append("indexer has not run yet")
    return {
        "status": "ok" if not reasons else "degraded",
        "reason": "; ".join(reasons) or None,
        "chain_id": services.chain_id,
        "contract": services.escrow.address,
        "head_block": head,
        "indexed_block": indexed,
    }
