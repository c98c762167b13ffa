"""`GET /api/accounts/{address}/credits`: what an account can withdraw, per token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import AccountCredits, refusals
from backend.escrows.credits import account_credits
from backend.inputs import Address

router = APIRouter(prefix="/api/accounts", tags=["accounts"])


@router.get(
    "/{address}/credits", response_model=AccountCredits, responses=refusals(400, 503)
)
def get_credits(
    address: Address, services: ServicesDep, session: SessionDep, tokens: TokensDep
) -> dict[str, Any]:
    """Every token the account was ever credited in (from the index), with the amount the
    contract's `credits` view holds for it now (base units, decimal string)."""
    return account_credits(session, services.chain_id, services.escrow, tokens, address)
