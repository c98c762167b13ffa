"""Confirmations by signature: the typed data to sign, and the signed confirmation to relay.

`POST /api/escrows/{id}/milestones/{m}/typed-data` -> `{typed_data, review, comment_hash, digest,
payout}`
`POST /api/escrows/{id}/milestones/{m}/confirmations` -> 202 `{id, status, tx_hash}`
`GET /api/confirmations/{request_id}` -> the outbox row's progress
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, Field, StrictInt, StrictStr, WithJsonSchema

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep, committed
from backend.api.schemas import (
    ConfirmationProgress,
    ConfirmationQueued,
    PreparedConfirmation,
    refusals,
)
from backend.confirmations.chain_reader import Web3ChainReader
from backend.confirmations.outbox import get_request, request_json
from backend.confirmations.reviews import MAX_CRITERION_NOTE_CHARS
from backend.confirmations.submit import submit_confirmation
from backend.confirmations.verify import ConfirmationInput, prepare
from backend.inputs import ROW_IDS, EscrowId, MilestoneIndex, Uint256, parse_row_id

router = APIRouter(prefix="/api", tags=["confirmations"])

#: an outbox row's id (`parse_row_id`): 404 for an id no row can have
RequestId = Annotated[
    int,
    BeforeValidator(lambda value: parse_row_id("confirmation request", value, "request_id")),
    WithJsonSchema({"type": "integer", "minimum": ROW_IDS.start, "maximum": ROW_IDS.stop - 1}),
]


#: the review's answers to the terms' acceptance criteria, read by
#: `backend.confirmations.reviews.parse_criteria` (422 naming `criteria[i].met`, ...), so the
#: body model takes any JSON here and only documents the shape
CriteriaAnswers = Annotated[
    Any,
    WithJsonSchema({
        "anyOf": [
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer", "minimum": 0,
                                  "description": "the entry's own position: 0, 1, ..."},
                        "met": {"type": "boolean"},
                        "note": {"type": "string", "maxLength": MAX_CRITERION_NOTE_CHARS},
                    },
                    "required": ["index", "met"],
                    "additionalProperties": False,
                },
            },
            {"type": "null"},
        ],
        "description": "Only when the escrow's terms list acceptance_criteria: one entry per "
        "criterion, in the terms' order",
    }),
]


class TypedDataRequest(BaseModel):
    rating: StrictInt = Field(description="1..5")
    comment: StrictStr = Field("", description="at most 2,000 characters")
    attachments: list[StrictStr] = Field(
        default_factory=list, description="sha256 digests of uploaded attachments, at most 10"
    )
    deadline: Uint256 | None = Field(
        None,
        description="unix seconds (uint256, a decimal string or an integer); default one hour "
        "ahead",
    )
    criteria: CriteriaAnswers = None

    def to_input(self, escrow_id: int, milestone: int) -> ConfirmationInput:
        return ConfirmationInput(
            escrow_id=escrow_id,
            milestone=milestone,
            rating=self.rating,
            comment=self.comment,
            attachments=tuple(self.attachments),
            deadline=self.deadline,
            criteria=self.criteria,
        )


class ConfirmationRequestBody(TypedDataRequest):
    deadline: Uint256 = Field(
        description="the deadline that was signed (uint256, a decimal string or an integer)"
    )
    signature: StrictStr = Field(description="65-byte r|s|v signature as 0x hex (or a wallet's)")


@router.post(
    "/escrows/{escrow_id}/milestones/{milestone}/typed-data",
    response_model=PreparedConfirmation,
    # a review without criteria (a criterion without note) keeps the key out: it is the
    # document the hash covers, as it is hashed
    response_model_exclude_unset=True,
    responses=refusals(400, 404, 409, 410, 413, 422, 503),
)
async def typed_data(
    escrow_id: EscrowId,
    milestone: MilestoneIndex,
    body: TypedDataRequest,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
) -> dict[str, Any]:
    """The EIP-712 `Confirmation` for the client to sign with `eth_signTypedData_v4`, and
    what the rating credits each side if it settles the milestone now (`payout`)."""

    def work() -> dict[str, Any]:
        chain = Web3ChainReader(services, session)
        prepared = prepare(session, chain, body.to_input(escrow_id, milestone))
        return prepared.response(tokens.get(prepared.params.token).to_json())

    return await committed(session, work)


@router.post(
    "/escrows/{escrow_id}/milestones/{milestone}/confirmations",
    status_code=202,
    response_model=ConfirmationQueued,
    responses=refusals(400, 403, 404, 409, 410, 413, 422, 503),
)
async def confirm(
    escrow_id: EscrowId,
    milestone: MilestoneIndex,
    body: ConfirmationRequestBody,
    services: ServicesDep,
    session: SessionDep,
) -> dict[str, Any]:
    """Verifies the client's signature, stores the review and queues the relay."""

    def work() -> dict[str, Any]:
        chain = Web3ChainReader(services, session)
        inp = body.to_input(escrow_id, milestone)
        return request_json(submit_confirmation(session, chain, inp, body.signature))

    return await committed(session, work)


@router.get(
    "/confirmations/{request_id}", response_model=ConfirmationProgress, responses=refusals(404)
)
def confirmation_status(request_id: RequestId, session: SessionDep) -> dict[str, Any]:
    """Where a relayed confirmation stands: pending, signed, sent, mined or failed (with why)."""
    return request_json(get_request(session, request_id), full=True)
