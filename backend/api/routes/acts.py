"""Acceptance acts: the printable certificate of completion of a settled milestone."""

from __future__ import annotations

from fastapi import APIRouter, Response

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import raw_body, refusals
from backend.escrows.acts import act_pdf
from backend.inputs import EscrowId, MilestoneIndex

router = APIRouter(prefix="/api/escrows", tags=["acts"])


@router.get(
    "/{escrow_id}/milestones/{milestone}/act.pdf",
    response_class=Response,
    responses={
        **raw_body("application/pdf", "The certificate of completion (shown inline)"),
        **refusals(404, 409, 503),
    },
)
def get_act(
    escrow_id: EscrowId,
    milestone: MilestoneIndex,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
) -> Response:
    """The certificate of completion of a settled milestone (PDF): parties, amount, rating,
    review with attachment digests, the client's signature and its recovered signer, the
    transaction and the split paid; 404 for an unknown escrow or milestone, 409 when the
    milestone is not settled."""
    body, filename = act_pdf(session, services, tokens, escrow_id, milestone)
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )
