"""`GET /api/escrows/{id}/audit`: the verifier's report of one escrow."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import EscrowAuditReport, refusals
from backend.audit.verify import audit_escrow
from backend.chain.errors import from_node
from backend.inputs import EscrowId

router = APIRouter(prefix="/api/escrows", tags=["audit"])


@router.get(
    "/{escrow_id}/audit", response_model=EscrowAuditReport, responses=refusals(404, 503)
)
def escrow_audit(
    escrow_id: EscrowId, services: ServicesDep, session: SessionDep
) -> dict[str, Any]:
    """The named checks of the escrow, read from the chain and this service's database.
    404 `not_found` ("unknown escrow N") when the contract has no event of that escrow; 503
    `unavailable` (with `Retry-After`) when the node does not answer."""
    return from_node(
        "audit",
        lambda: audit_escrow(
            services.w3,
            services.escrow.address,
            escrow_id,
            from_block=services.deployment_block,
            session=session,
            data_dir=services.settings.data_dir,
        ),
    ).to_json()
