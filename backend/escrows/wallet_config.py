"""`GET /api/config`: what a wallet page needs before it speaks to the chain and the API: the
chain, the RPC URL a wallet should add, the contract and its deployment block, the service's own
accounts (oracle, relayer) and the arbiter it offers, the native currency, and the limits the
API enforces. Addresses only: no key, keystore path or password is ever part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.chain.errors import from_node
from backend.chain.keys import oracle_account, relayer_account
from backend.chain.tokens import ETH
from backend.chain.types import MAX_MILESTONES
from backend.confirmations.reviews import (
    ALLOWED_MEDIA_TYPES,
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    MAX_COMMENT_CHARS,
    MAX_CRITERION_NOTE_CHARS,
)
from backend.confirmations.verify import DEFAULT_DEADLINE_SECONDS
from backend.errors import ConfigurationError
from backend.escrows.milestone_documents import MAX_DELIVERY_NOTE_CHARS, MAX_DISPUTE_REASON_CHARS
from backend.oracle.terms_store import MAX_TERMS_BYTES
from backend.services import Services


@dataclass(frozen=True)
class ServiceAccounts:
    """The addresses the service sends from (EIP-55); None for a role it has no key for."""

    oracle: str | None
    relayer: str | None


def service_accounts(services: Services) -> ServiceAccounts:
    """The oracle's and the relayer's addresses, from the keys the workers load
    (`backend.chain.keys`); a role without a usable key (no keystore off a dev chain, a wrong
    password) is None; 503 when the node does not answer (a dev chain is told by its chain id).
    Decrypting a keystore is slow: callers keep the answer."""

    def address(load: Any) -> str | None:
        try:
            account = from_node("chain id", lambda: load(services.w3, services.settings))
        except ConfigurationError:
            return None
        return str(account.address)

    return ServiceAccounts(oracle=address(oracle_account), relayer=address(relayer_account))


def limits() -> dict[str, Any]:
    """The API's limits (lengths in characters, sizes in bytes, times in seconds)."""
    return {
        "max_comment_chars": MAX_COMMENT_CHARS,
        "max_criterion_note_chars": MAX_CRITERION_NOTE_CHARS,
        "max_delivery_note_chars": MAX_DELIVERY_NOTE_CHARS,
        "max_dispute_reason_chars": MAX_DISPUTE_REASON_CHARS,
        "max_attachments": MAX_ATTACHMENTS,
        "max_attachment_bytes": MAX_ATTACHMENT_BYTES,
        "attachment_media_types": list(ALLOWED_MEDIA_TYPES),
        "max_milestones": MAX_MILESTONES,
        "max_terms_bytes": MAX_TERMS_BYTES,
        "default_deadline_seconds": DEFAULT_DEADLINE_SECONDS,
    }


def service_config(services: Services, accounts: ServiceAccounts) -> dict[str, Any]:
    """`{chain_id, rpc_url, contract, deployment_block, oracle, relayer, arbiter, native,
    limits}` (docs/interface.md section 4.3)."""
    settings = services.settings
    return {
        "chain_id": services.chain_id,
        "rpc_url": settings.wallet_rpc_url,
        "contract": services.escrow.address,
        "deployment_block": services.deployment_block,
        "oracle": accounts.oracle,
        "relayer": accounts.relayer,
        "arbiter": settings.default_arbiter,
        "native": {"symbol": ETH.symbol, "decimals": ETH.decimals},
        "limits": limits(),
    }
