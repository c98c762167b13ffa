"""Transactions of any wallet: `GET /api/tx/{tx_hash}` (where it stands and the escrow events it
emitted, so a wallet learns the id of the escrow it created) and `POST /api/tx/withdraw` (the
ready `withdraw(token)` of a credit)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from backend.api.deps import ServicesDep
from backend.api.schemas import TransactionReport, WalletTx, refusals
from backend.escrows.actions import withdraw_tx
from backend.escrows.transactions import transaction_report

router = APIRouter(prefix="/api/tx", tags=["transactions"])


@router.post("/withdraw", response_model=WalletTx, responses=refusals(400, 422))
def post_withdraw_tx(
    services: ServicesDep, body: Annotated[dict[str, Any] | None, Body()] = None
) -> dict[str, Any]:
    """A ready `{to, data, value}` of `withdraw(token)`: body `{token}`, an address (the zero
    address for ETH). Sent from the credited account's own wallet, it pays that account its
    whole credit in the token. 422 for a missing or malformed token."""
    return withdraw_tx(services.escrow, body)


@router.get(
    "/{tx_hash}", response_model=TransactionReport, responses=refusals(400, 404, 503)
)
def get_transaction(tx_hash: str, services: ServicesDep) -> dict[str, Any]:
    """`{tx_hash, status, block_number, from, to, escrow_ids, events, error}` from the node:
    `pending`, `mined` or `reverted` (with the replayed custom error in `error`), and the
    escrow contract's events of its receipt, decoded. 400 for a malformed hash, 404 when the
    node knows no such transaction."""
    return transaction_report(services.w3, services.escrow.address, tx_hash)
