"""Accounts: what an account can withdraw, per token (`GET /api/accounts/{address}/credits`), and
its ledger over all its escrows as CSV (`GET /api/accounts/{address}/ledger.csv`, what
`escrow ledger` prints)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import AccountCredits, raw_body, refusals
from backend.escrows.credits import account_credits
from backend.escrows.ledger_export import account_ledger, ledger_csv, ledger_filename, parse_days
from backend.inputs import Address

router = APIRouter(prefix="/api/accounts", tags=["accounts"])

_DAY = "YYYY-MM-DD, a UTC day"


@router.get(
    "/{address}/credits", response_model=AccountCredits, responses=refusals(400, 503)
)
def get_credits(
    address: Address, services: ServicesDep, session: SessionDep, tokens: TokensDep
) -> dict[str, Any]:
    """Every token the account was ever credited in (from the index), with the amount the
    contract's `credits` view holds for it now (base units, decimal string)."""
    return account_credits(session, services.chain_id, services.escrow, tokens, address)


@router.get(
    "/{address}/ledger.csv",
    response_class=Response,
    responses={
        **raw_body(
            "text/csv",
            "Every money movement of the account over all its escrows, one CSV row each (an "
            "attachment): the CSV of `escrow ledger`",
            {"type": "string"},
        ),
        **refusals(400, 404, 422, 503),
    },
)
def get_ledger(
    address: Address,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
    date_from: Annotated[
        str | None, Query(alias="from", description=f"First day, inclusive ({_DAY})")
    ] = None,
    date_to: Annotated[
        str | None, Query(alias="to", description=f"Last day, inclusive ({_DAY})")
    ] = None,
) -> Response:
    """Every money movement of the account over all its escrows (as client or provider) and its
    withdrawals, in chain order, with the columns of the escrow statement: exactly what
    `escrow ledger ADDRESS --from --to` prints. An account whose movements all lie outside the
    days gets the header only; 404 `unknown account` for one no indexed escrow names; 400 a
    malformed address; 422 a malformed day or `from` after `to`."""
    start, end = parse_days(date_from, date_to)
    rows = account_ledger(session, services.chain_id, tokens, address, start, end)
    filename = ledger_filename(services.chain_id, address, start, end)
    return Response(
        ledger_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
