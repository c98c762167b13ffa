"""A client of the running service, as a wallet or a script is: the REST API (`api`) plus a
local signer that signs and sends what the API hands out (`wallet`). Used by the role commands
of the `escrow` command line and by `escrow demo`."""

from __future__ import annotations

from backend.client.api import (
    ServiceClient,
    ServiceRefusedError,
    ServiceTimeoutError,
    ServiceUnreachableError,
)
from backend.client.wallet import DEV_ROLES, SentTx, Wallet, load_signer

__all__ = [
    "DEV_ROLES",
    "SentTx",
    "ServiceClient",
    "ServiceRefusedError",
    "ServiceTimeoutError",
    "ServiceUnreachableError",
    "Wallet",
    "load_signer",
]
