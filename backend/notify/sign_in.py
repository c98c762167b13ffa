"""Sign-in with Ethereum against this service: nonces it issues (single use, expiring) and
`authenticate`, which turns a signed EIP-4361 message into a proven address."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from eth_typing import ChecksumAddress
from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from web3 import Web3

from backend.db.models import SiweNonce
from backend.errors import ConfigurationError, TooLargeError
from backend.notify.errors import NonceRefusedError
from backend.notify.siwe import check_message, parse_message, verify_signature

#: largest message accepted (a few resources at most)
MAX_MESSAGE = 4_096


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    expires_at: int


def issue_nonce(session: Session, *, now: int, ttl: int) -> IssuedNonce:
    """A fresh 128-bit nonce (32 hex characters, alphanumeric as EIP-4361 wants), stored until it
    expires; expired nonces are purged on the way."""
    session.execute(delete(SiweNonce).where(SiweNonce.expires_at < now))
    nonce = secrets.token_hex(16)
    session.add(SiweNonce(nonce=nonce, issued_at=now, expires_at=now + ttl, used_at=None))
    session.flush()
    return IssuedNonce(nonce, now + ttl)


def consume_nonce(session: Session, nonce: str, *, now: int) -> None:
    """Marks `nonce` used, atomically; refuses one that is unknown, used or expired."""
    result: Any = session.execute(
        update(SiweNonce)
        .where(
            SiweNonce.nonce == nonce,
            SiweNonce.used_at.is_(None),
            SiweNonce.expires_at >= now,
        )
        .values(used_at=now)
    )
    if result.rowcount == 1:
        return
    row = session.get(SiweNonce, nonce)
    if row is None:
        raise NonceRefusedError(f"nonce {nonce!r} was not issued by this service")
    if row.used_at is not None:
        raise NonceRefusedError(f"nonce {nonce!r} was already used")
    raise NonceRefusedError(f"nonce {nonce!r} expired at {row.expires_at}")


def authenticate(
    session: Session,
    message: str,
    signature: str,
    *,
    domain: str,
    chain_id: int,
    now: int,
    w3: Web3 | None = None,
) -> ChecksumAddress:
    """The address a signed sign-in message proves. Checks, in order: the ABNF (400), domain,
    chain and validity times (401), the signature (400 malformed, 401 another signer; contract
    wallets through EIP-1271 when `w3` is given, 503 when the node does not answer), then uses
    up the nonce (401 on a replay)."""
    if len(message) > MAX_MESSAGE:
        raise TooLargeError("sign-in message", len(message), MAX_MESSAGE)
    parsed = parse_message(message)
    check_message(parsed, domain=domain, chain_id=chain_id, now=now)
    address = verify_signature(parsed, message, signature, w3=w3)
    consume_nonce(session, parsed.nonce, now=now)
    return address


def check_domain_setting(domain: str | None, chain_id: int, *, dev_chain: bool) -> None:
    """Refuses to serve sign-in without `ESCROW_SIWE_DOMAIN` (`domain`) off a dev chain.

    Unset, the domain a sign-in message must name is the request's own `Host` header, which
    whoever sends the request chooses: a page on another site could get a message for itself
    signed and replay it here. EIP-4361 has the relying party check the domain it is served on,
    so it must be configured; on a dev chain (chain id 31337, the in-process chain) the Host
    header stays accepted for local use. Raises `ConfigurationError` (one line, exit 2)."""
    if domain or dev_chain:
        return
    raise ConfigurationError(
        f"ESCROW_SIWE_DOMAIN is not set: on chain {chain_id} (not the development chain "
        "31337) sign-in messages must name this service's own domain, not the request's Host "
        "header; set it to the host[:port] users reach the service at"
    )
