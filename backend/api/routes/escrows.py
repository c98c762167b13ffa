"""Escrows: the indexed list and detail, the accounting statement, and ready transactions for
wallets (`prepare` for the creation, `tx/{action}` for every later call, `delivery` and `dispute`
for a delivery or a dispute with its document)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from backend.api.app_state import AppServicesDep, DetailCacheDep, TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import (
    EscrowDetail,
    EscrowPage,
    PreparedDelivery,
    PreparedDispute,
    PreparedEscrow,
    WalletTx,
    raw_body,
    refusals,
)
from backend.chain.clock import chain_time
from backend.chain.erc1271 import has_code
from backend.errors import OutOfRangeError
from backend.escrows.actions import action_tx
from backend.escrows.detail import escrow_detail_body
from backend.escrows.listing import STATUSES, EscrowFilter, list_escrows, require_ledger
from backend.escrows.milestone_documents import (
    DELIVERY,
    DISPUTE,
    MAX_TEXT_CHARS,
    DocumentKind,
    prepare_document,
)
from backend.escrows.prepare import PrepareRequest, prepare_escrow
from backend.escrows.statements import statement_csv, statement_filename
from backend.inputs import Address, EscrowId, MilestoneIndex

router = APIRouter(prefix="/api/escrows", tags=["escrows"])


@router.get("", response_model=EscrowPage, responses=refusals(400, 422, 503))
def get_escrows(
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
    client: Address | None = None,
    provider: Address | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    arbiter: Address | None = None,
    oracle: Address | None = None,
    party: Annotated[
        Address | None, Query(description="An address in any role: client, provider, arbiter "
                                          "or oracle; each item then lists its `roles`")
    ] = None,
) -> dict[str, Any]:
    """Indexed escrows, newest first; filter by `client`, `provider`, `arbiter`, `oracle`,
    `party` (any of the four roles; the items then carry that address's `roles`) and `status`
    (proposed, active, closed), all given filters together; page with `limit` and `offset`
    (`next_offset` is null at the end)."""
    if status is not None and status not in STATUSES:
        raise OutOfRangeError("status", status, f"one of {', '.join(STATUSES)}")
    where = EscrowFilter(client=client, provider=provider, status=status, arbiter=arbiter,
                         oracle=oracle, party=party)
    return list_escrows(session, services.chain_id, tokens, where, limit=limit, offset=offset)


@router.post(
    "/prepare", response_model=PreparedEscrow, responses=refusals(400, 404, 413, 422, 503)
)
def prepare(
    request: PrepareRequest, services: ServicesDep, session: SessionDep
) -> dict[str, Any]:
    """The creation transaction `{to, data, value}` for the client's wallet, with the checked
    `params` and the `terms_hash` (the terms document is stored when given); for an ERC-20,
    `approve` is the allowance the client grants first."""
    w3 = services.w3
    return prepare_escrow(
        session,
        services.escrow,
        request,
        now=chain_time(w3),
        has_code=lambda address: has_code(w3, address),
        min_period_seconds=services.settings.min_period_seconds,
    )


@router.get("/{escrow_id}", response_model=EscrowDetail, responses=refusals(404, 503))
async def get_escrow(
    escrow_id: EscrowId, services: AppServicesDep, tokens: TokensDep, cache: DetailCacheDep
) -> Response:
    """One indexed escrow: `params`, `token` (decimals, symbol), `balances`, `milestones` (with
    the stored review of each settled one), `breaches` and the stored `terms_document`.

    The hot path: the body is `escrow_detail` serialized once and kept in the `DetailCache`, so
    it is sent as those bytes and `EscrowDetail` only documents it (FastAPI checks no `Response`
    a route returns; tests/api/test_openapi.py checks real bodies against the model)."""
    body = await run_in_threadpool(  # the database work, in one worker thread: the hot path
        escrow_detail_body,
        services.engine,
        services.chain_id,
        services.escrow.address,
        escrow_id,
        tokens,
        cache,
    )
    return Response(body, media_type="application/json")


@router.get(
    "/{escrow_id}/statement.csv",
    response_class=Response,
    responses={
        **raw_body(
            "text/csv",
            "Every money movement of the escrow, one CSV row each (an attachment)",
            {"type": "string"},
        ),
        **refusals(404, 503),
    },
)
def get_statement(
    escrow_id: EscrowId, services: ServicesDep, session: SessionDep, tokens: TokensDep
) -> Response:
    """Every money movement of the escrow, one CSV row each, with its transaction and time."""
    led = require_ledger(session, services.chain_id, escrow_id)
    body = statement_csv(led, tokens.get(led.params.token))
    filename = statement_filename(services.chain_id, escrow_id)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/{escrow_id}/tx/{action}", response_model=WalletTx, responses=refusals(400, 404, 422)
)
def post_action_tx(
    escrow_id: EscrowId,
    action: str,
    services: ServicesDep,
    session: SessionDep,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:
    """A ready `{to, data, value}` for `action` with the escrow's `EscrowParams` filled in.
    Actions and their body arguments: accept, cancel, reclaim: none; deliver: milestone,
    deliveryHash?; confirm: milestone, rating, commentHash?; dispute: milestone, reasonHash?;
    timeout: milestone; challenge, finalize: breachId; resolve-dispute: milestone, providerBps;
    stale-dispute: milestone; resolve-breach: breachId, upheld; stale-breach: breachId."""
    return action_tx(session, services.escrow, services.chain_id, escrow_id, action, body)


Attachments = Annotated[
    list[StrictStr],
    Field(default_factory=list, description="sha256 digests of uploaded attachments, at most 10"),
]


class DeliveryRequest(BaseModel):
    note: StrictStr = Field(
        description=f"What was delivered, at most {MAX_TEXT_CHARS:,} characters (may be empty "
        "with an attachment)"
    )
    attachments: Attachments


class DisputeRequest(BaseModel):
    reason: StrictStr = Field(
        description=f"Why the client disputes, at most {MAX_TEXT_CHARS:,} characters (may be "
        "empty with an attachment)"
    )
    attachments: Attachments


def _post_document(
    kind: DocumentKind,
    escrow_id: int,
    milestone: int,
    text: str,
    attachments: list[str],
    services: ServicesDep,
    session: SessionDep,
    cache: DetailCacheDep,
) -> dict[str, Any]:
    """Both document routes: stored, the party's transaction, and the escrow's cached detail
    dropped (the document may belong to a transaction indexed already)."""
    answer = prepare_document(session, services.escrow, services.chain_id, escrow_id,
                              milestone, kind, text, attachments)
    cache.forget(escrow_id)
    return answer


@router.post(
    "/{escrow_id}/milestones/{milestone}/delivery",
    response_model=PreparedDelivery,
    responses=refusals(400, 404, 413, 422, 503),
)
def post_delivery(
    escrow_id: EscrowId,
    milestone: MilestoneIndex,
    body: DeliveryRequest,
    services: ServicesDep,
    session: SessionDep,
    cache: DetailCacheDep,
) -> dict[str, Any]:
    """Stores the delivery document `{"note", "attachments": [{name, media_type, size,
    sha256}]}` (RFC 8785 canonical, keccak256 = `delivery_hash`) and answers the provider's
    ready `deliver` transaction carrying that `deliveryHash`; the escrow detail shows the
    document as the milestone's `delivery`. 404 escrow, milestone or attachment; 413 note or
    attachment count; 422 an empty delivery or a malformed digest."""
    return _post_document(DELIVERY, escrow_id, milestone, body.note, body.attachments,
                          services, session, cache)


@router.post(
    "/{escrow_id}/milestones/{milestone}/dispute",
    response_model=PreparedDispute,
    responses=refusals(400, 404, 413, 422, 503),
)
def post_dispute(
    escrow_id: EscrowId,
    milestone: MilestoneIndex,
    body: DisputeRequest,
    services: ServicesDep,
    session: SessionDep,
    cache: DetailCacheDep,
) -> dict[str, Any]:
    """Stores the client's dispute reason `{"reason", "attachments": [{name, media_type, size,
    sha256}]}` (RFC 8785 canonical, keccak256 = `reason_hash`) and answers the client's ready
    `dispute` transaction carrying that `reasonHash` (as `tx/dispute`); the escrow detail shows
    the document as the milestone's `dispute_reason`. 404 escrow, milestone or attachment; 413
    reason or attachment count; 422 an empty reason without attachments or a malformed
    digest."""
    return _post_document(DISPUTE, escrow_id, milestone, body.reason, body.attachments,
                          services, session, cache)
