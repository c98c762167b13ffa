"""`POST /api/escrows/prepare`: an escrow's creation transaction, built from a request that has
been checked against everything `createEscrow` refuses, so a bad request never reaches a wallet.

The body uses snake_case names; the camelCase names of `EscrowParams.to_json` are accepted too,
so a client may paste the `terms` of an existing escrow's params as `rules`. Values are read by
the parsers of `backend.inputs` (addresses, amounts, uint256 values, hashes) and the inline terms
document by the one terms model (`backend.oracle.terms`): prepare refuses what `POST /api/terms`
refuses, with the same 422 naming the field (`terms_document.kpis`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_typing import ChecksumAddress
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from backend.chain.client import EscrowClient
from backend.chain.types import (
    BPS,
    MAX_MILESTONES,
    MAX_TOTAL,
    ZERO_ADDRESS,
    EscrowParams,
    Terms,
)
from backend.errors import NotFoundError, OutOfRangeError
from backend.inputs import Address, Amount, Hash32, Uint256
from backend.oracle.terms import DEFAULT_MIN_PERIOD_SECONDS, parse_terms
from backend.oracle.terms_store import store_terms, terms_document, terms_text

UINT16, UINT32, UINT64 = 2**16, 2**32, 2**64


class _Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        loc_by_alias=False,  # errors name the snake_case field
    )


class RulesIn(_Body):
    """The contract's `Terms`: payout table (bps per rating 1..5), refund rules (bps) and time
    windows (seconds; `delivery_deadline` in unix seconds). Each a uint256 as a decimal string
    or a JSON integer; the ranges the contract checks come in `check_rules`."""

    rating_payout_bps: list[Uint256]
    breach_refund_bps: Uint256
    streak_refund_bps: Uint256
    incident_refund_bps: Uint256
    max_refund_bps: Uint256
    review_period: Uint256
    challenge_period: Uint256
    arbitration_period: Uint256 = 0
    delivery_deadline: Uint256


class PrepareRequest(_Body):
    client: Address
    provider: Address
    oracle: Address
    arbiter: Address | None = None
    token: Address | None = None
    #: base units: decimal strings, or JSON integers up to 2^53 - 1
    milestone_amounts: list[Amount]
    #: the terms document to store and hash; or `terms_hash` of one stored before
    terms_document: dict[str, Any] | None = None
    terms_hash: Hash32 | None = None
    rules: RulesIn


def _range(field: str, value: int, low: int, high: int, expected: str | None = None) -> int:
    if not low <= value <= high:
        raise OutOfRangeError(field, value, expected or f"{low} to {high}")
    return value


def check_rules(rules: RulesIn, *, has_arbiter: bool, now: int) -> Terms:
    table = rules.rating_payout_bps
    if len(table) != 5:
        raise OutOfRangeError("rules.rating_payout_bps", table, "5 entries, for ratings 1 to 5")
    previous = 0
    for i, bps in enumerate(table):
        field = f"rules.rating_payout_bps[{i}]"
        _range(field, bps, 0, BPS)
        if bps < previous:
            raise OutOfRangeError(field, bps, f"non-decreasing: at least {previous}")
        previous = bps
    if table[4] != BPS:
        raise OutOfRangeError("rules.rating_payout_bps[4]", table[4], f"{BPS} (rating 5 pays all)")
    for name in ("breach_refund_bps", "streak_refund_bps", "incident_refund_bps", "max_refund_bps"):
        _range(f"rules.{name}", getattr(rules, name), 0, BPS)
    for name in ("review_period", "challenge_period"):
        _range(f"rules.{name}", getattr(rules, name), 1, UINT32 - 1, "1 to 2^32 - 1 seconds")
    low = 1 if has_arbiter else 0
    _range(
        "rules.arbitration_period",
        rules.arbitration_period,
        low,
        UINT32 - 1,
        f"{low} to 2^32 - 1 seconds" + (" (an arbiter needs a period)" if has_arbiter else ""),
    )
    _range(
        "rules.delivery_deadline",
        rules.delivery_deadline,
        now + 1,
        UINT64 - 1,
        f"a unix time after the chain's latest block ({now})",
    )
    return Terms(
        rating_payout_bps=(table[0], table[1], table[2], table[3], table[4]),
        breach_refund_bps=rules.breach_refund_bps,
        streak_refund_bps=rules.streak_refund_bps,
        incident_refund_bps=rules.incident_refund_bps,
        max_refund_bps=rules.max_refund_bps,
        review_period=rules.review_period,
        challenge_period=rules.challenge_period,
        arbitration_period=rules.arbitration_period,
        delivery_deadline=rules.delivery_deadline,
    )


def check_amounts(amounts: list[int]) -> tuple[int, ...]:
    """1 to `MAX_MILESTONES` positive amounts (base units) whose total is below 2^112."""
    if not 1 <= len(amounts) <= MAX_MILESTONES:
        raise OutOfRangeError(
            "milestone_amounts", f"{len(amounts)} milestones", f"1 to {MAX_MILESTONES}"
        )
    for i, amount in enumerate(amounts):
        if amount == 0:
            raise OutOfRangeError(f"milestone_amounts[{i}]", "0", "a positive amount in base units")
    if sum(amounts) >= MAX_TOTAL:
        raise OutOfRangeError("milestone_amounts", f"total {sum(amounts)}", "a total below 2^112")
    return tuple(amounts)


def check_parties(
    req: PrepareRequest,
) -> tuple[ChecksumAddress, ChecksumAddress, ChecksumAddress, ChecksumAddress, ChecksumAddress]:
    """(client, provider, oracle, arbiter, token), EIP-55; a missing arbiter or token is the
    zero address (no arbiter; ETH)."""
    client, provider, oracle = req.client, req.provider, req.oracle
    arbiter = ZERO_ADDRESS if req.arbiter is None else req.arbiter
    token = ZERO_ADDRESS if req.token is None else req.token
    if client == ZERO_ADDRESS:
        raise OutOfRangeError("client", client, "a non-zero address (the client sends the tx)")
    if provider == ZERO_ADDRESS:
        raise OutOfRangeError("provider", provider, "a non-zero address")
    if provider == client:
        raise OutOfRangeError("provider", provider, "an address other than the client's")
    return client, provider, oracle, arbiter, token


def resolve_terms_hash(
    session: Session, req: PrepareRequest, *, min_period_seconds: int = DEFAULT_MIN_PERIOD_SECONDS
) -> str:
    """Stores the terms document (when given; 422 naming `terms_document.<field>` when the terms
    model refuses it) and returns the terms hash to commit to. Either way the terms' period is
    at least `min_period_seconds` (the operator's `ESCROW_MIN_PERIOD_SECONDS`; 422
    `period_too_short` naming `terms_document.period_seconds`, or `terms_hash.period_seconds`
    for a document stored before the minimum)."""
    given = req.terms_hash
    if req.terms_document is not None:
        stored = store_terms(session, req.terms_document, where="terms_document",
                             min_period_seconds=min_period_seconds)
        if given is not None and given != stored:
            raise OutOfRangeError("terms_hash", given, f"the document's hash {stored}")
        return stored
    if given is None:
        raise OutOfRangeError("terms_hash", None, "a terms document or the hash of a stored one")
    if terms_text(session, given) is None:
        raise NotFoundError("terms document", given)
    parse_terms(terms_document(session, given), where="terms_hash",
                min_period_seconds=min_period_seconds)
    return given


def prepare_escrow(
    session: Session,
    escrow: EscrowClient,
    req: PrepareRequest,
    *,
    now: int,
    has_code: Callable[[str], bool],
    min_period_seconds: int = DEFAULT_MIN_PERIOD_SECONDS,
) -> dict[str, Any]:
    """`{params, terms_hash, tx, approve}`: `tx` creates and funds the escrow when the client sends
    it; for an ERC-20, `approve` must be sent first (it is `null` for ETH). The terms' period is
    at least `min_period_seconds` (`resolve_terms_hash`)."""
    client, provider, oracle, arbiter, token = check_parties(req)
    amounts = check_amounts(req.milestone_amounts)
    terms = check_rules(req.rules, has_arbiter=arbiter != ZERO_ADDRESS, now=now)
    # rolled back with the request on an error
    terms_hash = resolve_terms_hash(session, req, min_period_seconds=min_period_seconds)
    if token != ZERO_ADDRESS and not has_code(token):
        raise OutOfRangeError("token", token, "an ERC-20 contract (no code at this address)")
    params = EscrowParams(
        client=client,
        provider=provider,
        token=token,
        oracle=oracle,
        arbiter=arbiter,
        terms_hash=bytes.fromhex(terms_hash.removeprefix("0x")),
        milestone_amounts=amounts,
        terms=terms,
    )
    return {
        "params": params.to_json(),
        "terms_hash": terms_hash,
        "total": str(params.total),
        "tx": escrow.create_tx(params),
        "approve": None if params.is_eth else approve_tx(escrow, token, params.total),
    }


#: approve(address,uint256)
_APPROVE_SELECTOR = "0x095ea7b3"


def approve_tx(escrow: EscrowClient, token: str, amount: int) -> dict[str, Any]:
    """The ERC-20 `approve(escrow, amount)` the client sends before the creation."""
    data = (
        _APPROVE_SELECTOR
        + bytes(12).hex()
        + escrow.address.removeprefix("0x").lower()
        + amount.to_bytes(32, "big").hex()
    )
    return {"to": token, "data": data, "value": "0x0"}
