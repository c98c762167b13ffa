"""`POST /api/escrows/{id}/tx/{action}`: a ready `{to, data, value}` for every call after the
creation, with the escrow's `EscrowParams` filled in from the indexed `EscrowCreated`.

Each action names its contract function and its arguments; the body gives the arguments by their
camelCase names (`milestone`, `deliveryHash`, `rating`, `commentHash`, `reasonHash`, `breachId`,
`providerBps`, `upheld`; snake_case works too). Hashes are optional and default to zero.
Milestone indexes, breach ids, integers and hashes are read by the parsers of `backend.inputs`;
every refusal is 422 naming the argument, or 404 for a milestone or breach the escrow lacks.

`POST /api/tx/withdraw` is the one call of no escrow: `withdraw(token)` (`withdraw_tx`), its
`token` an address (the zero address for ETH), refused the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.chain.client import ACTIONS, EscrowClient
from backend.chain.types import BPS, ZERO_HASH, EscrowParams
from backend.db.models import EscrowRow, EventLog
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError
from backend.inputs import (
    MalformedValueError,
    out_of_range,
    parse_address,
    parse_escrow_id,
    parse_hash,
    parse_index,
    parse_milestone,
    parse_uint,
)


class MissingArgumentError(OutOfRangeError):
    """422: an action's required argument is absent."""

    code = "missing_argument"

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(field, None, expected)
        self.message = f"{field} is required: {expected}"
        self.args = (self.message,)


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # milestone | breach | rating | bps | hash | bool
    required: bool = True


MILESTONE = Arg("milestone", "milestone")
BREACH = Arg("breachId", "breach")

#: arguments after (escrowId, params), in the contract function's order
ACTION_ARGS: dict[str, tuple[Arg, ...]] = {
    "accept": (),
    "cancel": (),
    "reclaim": (),
    "deliver": (MILESTONE, Arg("deliveryHash", "hash", required=False)),
    "confirm": (MILESTONE, Arg("rating", "rating"), Arg("commentHash", "hash", required=False)),
    "dispute": (MILESTONE, Arg("reasonHash", "hash", required=False)),
    "timeout": (MILESTONE,),
    "challenge": (BREACH,),
    "finalize": (BREACH,),
    "resolve-dispute": (MILESTONE, Arg("providerBps", "bps")),
    "stale-dispute": (MILESTONE,),
    "resolve-breach": (BREACH, Arg("upheld", "bool")),
    "stale-breach": (BREACH,),
}
assert set(ACTION_ARGS) == set(ACTIONS)

_EXPECTED = {
    "milestone": "a milestone index (integer)",
    "breach": "a breach id (integer)",
    "rating": "an integer from 1 to 5",
    "bps": f"an integer from 0 to {BPS}",
    "hash": "a 32-byte 0x hex value",
    "bool": "true or false",
}


def _hash(name: str, value: object) -> bytes:
    if value is None:
        return ZERO_HASH
    if isinstance(value, str) and value[:2] == "0X":
        value = "0x" + value[2:]
    try:
        return bytes.fromhex(parse_hash(name, value)[2:])
    except MalformedValueError as exc:
        raise out_of_range(name, value, exc.expected) from None


@dataclass(frozen=True)
class EscrowRef:
    escrow_id: int
    params: EscrowParams
    breach_count: int


def indexed_escrow(session: Session, chain_id: int, escrow_id: int) -> EscrowRef:
    row = session.get(EscrowRow, (chain_id, parse_escrow_id(escrow_id)))
    if row is None:
        raise NotFoundError("escrow", escrow_id)
    breaches = session.scalar(
        select(func.count())
        .select_from(EventLog)
        .where(
            EventLog.chain_id == chain_id,
            EventLog.escrow_id == escrow_id,
            EventLog.event == "BreachReported",
        )
    )
    return EscrowRef(escrow_id, EscrowParams.from_json(row.params), int(breaches or 0))


def given_args(
    action: str, body: Mapping[str, Any] | None, known: set[str]
) -> dict[str, Any]:
    """The body's arguments by their camelCase names; 422 for one `action` does not take."""
    if body is not None and not isinstance(body, Mapping):
        raise MalformedInputError("body", "expected a JSON object of the action's arguments")
    given = {to_camel(k): v for k, v in (body or {}).items()}
    for key in given:
        if key not in known:
            raise OutOfRangeError(
                key, given[key], f"one of the arguments of {action}: {sorted(known) or 'none'}"
            )
    return given


def action_args(action: str, ref: EscrowRef, body: Mapping[str, Any] | None) -> list[Any]:
    """The contract arguments after (escrowId, params), checked; 404 for an unknown action,
    milestone or breach, 422 for a missing, unknown or invalid argument."""
    spec = ACTION_ARGS.get(action)
    if spec is None:
        raise NotFoundError("action", f"{action!r} (known: {', '.join(ACTION_ARGS)})")
    given = given_args(action, body, {a.name for a in spec})
    values: list[Any] = []
    for arg in spec:
        raw = given.get(arg.name)
        if raw is None:
            if arg.required:
                raise MissingArgumentError(arg.name, _EXPECTED[arg.kind])
            values.append(ZERO_HASH)
            continue
        values.append(_convert(arg, raw, ref))
    return values


def _convert(arg: Arg, raw: object, ref: EscrowRef) -> Any:
    expected = _EXPECTED[arg.kind]
    if arg.kind == "hash":
        return _hash(arg.name, raw)
    if arg.kind == "bool":
        if not isinstance(raw, bool):
            raise OutOfRangeError(arg.name, raw, expected)
        return raw
    if arg.kind == "milestone":
        value = parse_milestone(raw, arg.name)
        if value >= len(ref.params.milestone_amounts):
            raise NotFoundError("milestone", f"{value} of escrow {ref.escrow_id}")
        return value
    if arg.kind == "breach":
        value = parse_index("breach", raw, arg.name)
        if value >= ref.breach_count:
            raise NotFoundError("breach", f"{value} of escrow {ref.escrow_id}")
        return value
    try:
        value = parse_uint(arg.name, raw)
    except MalformedValueError:
        raise out_of_range(arg.name, raw, expected) from None
    if arg.kind == "rating" and not 1 <= value <= 5:
        raise OutOfRangeError(arg.name, value, expected)
    if arg.kind == "bps" and value > BPS:
        raise OutOfRangeError(arg.name, value, expected)
    return value


def action_tx(
    session: Session,
    escrow: EscrowClient,
    chain_id: int,
    escrow_id: int,
    action: str,
    body: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """`{to, data, value}` for `action` on the indexed escrow."""
    if action not in ACTION_ARGS:
        raise NotFoundError("action", f"{action!r} (known: {', '.join(ACTION_ARGS)})")
    ref = indexed_escrow(session, chain_id, escrow_id)
    args = action_args(action, ref, body)
    escrow.remember(escrow_id, ref.params)
    return escrow.tx_for(ACTIONS[action], escrow_id, *args)


def withdraw_tx(escrow: EscrowClient, body: Mapping[str, Any] | None) -> dict[str, Any]:
    """`{to, data, value}` of `withdraw(token)` for the caller's own wallet: it pays the sender
    its whole credit in `token` (the zero address for ETH). 422 for a missing token
    (`missing_argument`), one that is no address, or another argument."""
    given = given_args("withdraw", body, {"token"})
    raw = given.get("token")
    if raw is None:
        raise MissingArgumentError("token", "a token address (the zero address for ETH)")
    try:
        token = parse_address("token", raw)
    except MalformedValueError as exc:
        raise out_of_range("token", raw, exc.expected) from None
    data = escrow.contract.encode_abi("withdraw", args=[token])
    return {"to": escrow.address, "data": data, "value": hex(0)}
