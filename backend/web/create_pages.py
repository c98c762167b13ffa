"""The client's pages that create and settle: the terms builder (`GET /escrows/new`) and the review
of a delivered milestone (`GET /escrows/{id}/milestones/{m}/review`).

Both only gather what the page shows; the browser does the rest through the API
(`POST /api/escrows/prepare`, `POST .../typed-data`, `POST .../confirmations`, the ready
`dispute` transaction) and the wallet (`static/js/new_escrow.js`, `static/js/review.js`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from backend.api.app_state import TokensDep
from backend.api.deps import ServiceAccountsDep, ServicesDep, SessionDep
from backend.chain.tokens import TokenMetadata
from backend.chain.types import BPS, ZERO_ADDRESS
from backend.errors import NotFoundError, QualityEscrowError
from backend.escrows.detail import escrow_detail, load_ledger
from backend.escrows.next_steps import next_steps
from backend.escrows.wallet_config import limits, service_config
from backend.inputs import parse_escrow_id, parse_milestone
from backend.oracle.terms import AGGREGATES, DEFAULT_MIN_SAMPLES, OPERATORS
from backend.services import Services
from backend.web.pages import refused
from backend.web.render import page

router = APIRouter(tags=["pages"], include_in_schema=False)

#: the builder's starting values (the client changes them): payout per rating 1..5 in %
DEFAULT_PAYOUT_PCT = (20, 40, 60, 80, 100)


@router.get("/escrows/new", response_class=HTMLResponse)
def new_escrow(
    request: Request, services: ServicesDep, accounts: ServiceAccountsDep
) -> HTMLResponse:
    """The terms builder: parties, token, milestones, KPIs and refund rules, time windows,
    payout per rating and acceptance criteria; the page's script prepares and sends the
    creation from the connected account (the client). The oracle, the arbiter, the native
    currency and the limits are `GET /api/config`'s."""
    config = service_config(services, accounts)
    context = {
        "oracle": config["oracle"],
        "arbiter": config["arbiter"],
        "native": config["native"],
        "aggregates": AGGREGATES,
        "operators": OPERATORS,
        "default_min_samples": DEFAULT_MIN_SAMPLES,
        "payout_pct": DEFAULT_PAYOUT_PCT,
        "bps": BPS,
        "limits": config["limits"],
    }
    return page(request, services, "new_escrow.html", context)


@router.get("/escrows/{escrow_id}/milestones/{milestone}/review", response_class=HTMLResponse)
def review(
    request: Request,
    escrow_id: str,
    milestone: str,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
) -> HTMLResponse:
    """The client's review of a milestone: what was delivered, until when it can be reviewed,
    a rating with the acceptance criteria, a comment and attachments, what each side receives,
    then the signature; or a dispute instead. 404 for an unknown escrow or milestone."""
    try:
        body = review_data(
            session, services, tokens, parse_escrow_id(escrow_id), parse_milestone(milestone)
        )
    except QualityEscrowError as exc:
        return refused(request, services, exc)
    return page(request, services, "review.html", body)


def review_data(
    session: Session, services: Services, tokens: TokenMetadata, escrow_id: int, milestone: int
) -> dict[str, Any]:
    """What the review page shows of milestone `milestone` of escrow `escrow_id`: the escrow's
    detail (as `GET /api/escrows/{id}`), the milestone, the terms' acceptance criteria and
    payout table, and the review step open to the client now (with its deadline), if any."""
    detail = escrow_detail(session, services.chain_id, services.escrow.address, escrow_id, tokens)
    if milestone >= len(detail["milestones"]):
        raise NotFoundError("milestone", f"{milestone} of escrow {escrow_id}")
    led = load_ledger(session, services.chain_id, escrow_id)
    now = services.clock.now_or_service_time()
    review_step = next(
        (s for s in next_steps(led, now)
         if s.milestone == milestone and s.role == "client" and s.action == "review"),
        None,
    )
    terms = detail["terms_document"] or {}
    criteria = terms.get("acceptance_criteria") or []
    params = detail["params"]
    payouts = [int(bps) for bps in params["terms"]["ratingPayoutBps"]]
    return {
        "escrow": detail,
        "milestone": detail["milestones"][milestone],
        "token": detail["token"],
        "criteria": [str(c) for c in criteria] if isinstance(criteria, list) else [],
        "terms_title": terms.get("title"),
        "payout_bps": payouts,
        "review_step": review_step,
        "has_arbiter": params["arbiter"] != ZERO_ADDRESS,
        "limits": limits(),
    }
