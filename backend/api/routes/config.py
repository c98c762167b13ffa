"""`GET /api/config`: the chain, contract, service accounts and limits a wallet page needs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import ServiceAccountsDep, ServicesDep
from backend.api.schemas import ServiceConfig, refusals
from backend.escrows.wallet_config import service_config

router = APIRouter(prefix="/api/config", tags=["config"])


@router.get("", response_model=ServiceConfig, responses=refusals(503))
def get_config(services: ServicesDep, accounts: ServiceAccountsDep) -> dict[str, Any]:
    """The chain id, the RPC URL a wallet should add (`ESCROW_PUBLIC_RPC_URL`, else the
    service's own), the contract and its deployment block, the oracle and relayer addresses
    (null without a key), the arbiter offered for new escrows (`ESCROW_DEFAULT_ARBITER`, or
    null), the native currency and the API's limits. No key is ever part of it."""
    return service_config(services, accounts)
