"""The pages (`docs/interface.md` section 7): routes that gather what a page shows from the
domain packages and render its template in the reader's language (`render.page`). Actions run in
the browser: each page's script asks the API for typed data or a ready transaction and hands it
to the wallet.

Bad input gets the same page layout with the error in words (`error.html`) and the status the
API would give."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.api.errors import status_for
from backend.chain.tokens import TokenMetadata
from backend.errors import QualityEscrowError
from backend.escrows.credits import account_credits
from backend.escrows.listing import EscrowFilter, list_escrows
from backend.escrows.next_steps import next_steps
from backend.index.indexer import escrow_ledger
from backend.inputs import parse_address
from backend.services import Services
from backend.web.render import page

router = APIRouter(tags=["pages"], include_in_schema=False)

#: escrows the dashboard lists per account (newest first)
DASHBOARD_LIMIT = 100


def refused(request: Request, services: Services, exc: QualityEscrowError) -> HTMLResponse:
    """The page layout with the refusal in words, under the status the API gives it."""
    return page(request, services, "error.html", {"error": exc.code, "detail": exc.message},
                status_code=status_for(exc))


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
    account: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """The connected account's escrows by role with what each party must do next, and its
    credits per token (`?account=0x...`; without it, the page asks to connect a wallet)."""
    if account is None:
        return page(request, services, "dashboard.html", {"account": None})
    try:
        address = parse_address("account", account)
        body = dashboard_data(session, services, tokens, address)
    except QualityEscrowError as exc:
        return refused(request, services, exc)
    return page(request, services, "dashboard.html", {"account": address, **body})


def dashboard_data(
    session: Session, services: Services, tokens: TokenMetadata, account: str
) -> dict[str, Any]:
    """`{escrows: [{summary, roles, steps, mine}], credits}`: every escrow naming `account` in a
    role, newest first, the steps open to each party (`mine`: those for the account)."""
    now = services.clock.now_or_service_time()
    listed = list_escrows(session, services.chain_id, tokens, EscrowFilter(party=account),
                          limit=DASHBOARD_LIMIT, offset=0)
    escrows = []
    for summary in listed["escrows"]:
        led = escrow_ledger(session, services.chain_id, summary["id"])
        if led is None:
            continue
        steps = next_steps(led, now)
        escrows.append({
            "summary": summary,
            "roles": summary["roles"],
            "steps": steps,
            "mine": [s for s in steps if s.role in summary["roles"]],
        })
    credits = account_credits(session, services.chain_id, services.escrow, tokens, account)
    return {"escrows": escrows, "credits": credits["credits"], "now": now}
