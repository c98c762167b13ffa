"""An account's withdrawable credits (`GET /api/accounts/{address}/credits`).

Which tokens to ask about comes from the indexed events (every token an escrow ever credited the
account in, as client or provider); the amounts come from the contract's `credits` view, the
truth for money.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.chain.client import EscrowClient
from backend.chain.errors import from_node
from backend.chain.tokens import TokenMetadata
from backend.chain.types import ZERO_ADDRESS
from backend.db.models import EscrowRow, EventLog

#: event -> (argument credited to the client, argument credited to the provider)
_CREDITING = {
    "MilestoneSettled": ("toClient", "toProvider"),
    "BreachSettled": ("toClient", "toProvider"),
    "EscrowCancelled": ("refund", None),
}


def credited_tokens(session: Session, chain_id: int, account: str) -> list[str]:
    """Tokens in which some indexed event credited `account`, zero address (ETH) first."""
    rows = session.execute(
        select(EscrowRow.token, EscrowRow.client, EscrowRow.provider, EventLog.event, EventLog.args)
        .join(
            EventLog,
            (EventLog.chain_id == EscrowRow.chain_id) & (EventLog.escrow_id == EscrowRow.escrow_id),
        )
        .where(
            EscrowRow.chain_id == chain_id,
            or_(EscrowRow.client == account, EscrowRow.provider == account),
            EventLog.event.in_(_CREDITING),
        )
    )
    tokens: set[str] = set()
    for token, client, provider, event, args in rows:
        if token in tokens:
            continue
        to_client, to_provider = _CREDITING[event]
        as_client = client == account and int(args.get(to_client, 0)) > 0
        as_provider = provider == account and to_provider and int(args.get(to_provider, 0)) > 0
        if as_client or as_provider:
            tokens.add(token)
    return sorted(tokens, key=lambda t: (t != ZERO_ADDRESS, t.lower()))


def account_credits(
    session: Session,
    chain_id: int,
    escrow: EscrowClient,
    tokens: TokenMetadata,
    account: str,
) -> dict[str, Any]:
    """`{account, credits: [{token, symbol, decimals, amount}]}`, amounts read from the chain."""
    def credit(token: str) -> int:
        return from_node("credits", lambda: escrow.credits(account, token))

    credits = []
    for token in credited_tokens(session, chain_id, account):
        info = tokens.get(token)
        credits.append(
            {
                "token": info.address,
                "symbol": info.symbol,
                "decimals": info.decimals,
                "amount": str(credit(token)),
            }
        )
    return {"account": account, "credits": credits}
