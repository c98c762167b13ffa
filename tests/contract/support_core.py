"""Helpers shared by the creation and milestone test files (createEscrow, cancel, accept,
submitDelivery, confirm, confirmWithSig, releaseAfterTimeout, reclaimExpired).

Timing on the in-process chain: a transaction is mined in its own block whose timestamp is the
pending block's, `max(latest + 1, wall clock when the previous block was mined)`, but the gas
estimate that decides a refusal (and fills the error's `timestamp`) runs at
`max(latest + 1, wall clock now)`. Both are `latest + 1` once the chain is ahead of the wall
clock, which `ahead` and `at_next_block` ensure. A refused call mines nothing.
"""

from __future__ import annotations

import time
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3.contract.contract import ContractFunction

from backend.chain.transactions import Sender, TxResult, send
from backend.chain.types import ZERO_HASH, EscrowParams, EscrowView, Status
from tests.support import EscrowEnv

#: the ABI type of `EscrowParams`, spelled out independently of the contract's ABI
PARAMS_ABI_TYPE = (
    "(address,address,address,address,address,bytes32,uint256[],"
    "(uint16[5],uint16,uint16,uint16,uint16,uint32,uint32,uint32,uint64))"
)
ZERO32 = ZERO_HASH
DELIVERY_HASH = b"\x22" * 32  # what env.deliver submits
COMMENT = keccak(text='{"attachments":[],"comment":"good work"}')


def python_params_hash(p: EscrowParams) -> bytes:
    """`keccak256(abi.encode(p))` computed in Python."""
    return keccak(abi_encode([PARAMS_ABI_TYPE], [p.to_abi()]))


def params_event_dict(p: EscrowParams) -> dict[str, Any]:
    """The `params` argument `EscrowCreated` must carry for `p`, as web3 decodes it."""
    t = p.terms
    return {
        "client": p.client,
        "provider": p.provider,
        "token": p.token,
        "oracle": p.oracle,
        "arbiter": p.arbiter,
        "termsHash": p.terms_hash,
        "milestoneAmounts": list(p.milestone_amounts),
        "terms": {
            "ratingPayoutBps": list(t.rating_payout_bps),
            "breachRefundBps": t.breach_refund_bps,
            "streakRefundBps": t.streak_refund_bps,
            "incidentRefundBps": t.incident_refund_bps,
            "maxRefundBps": t.max_refund_bps,
            "reviewPeriod": t.review_period,
            "challengePeriod": t.challenge_period,
            "arbitrationPeriod": t.arbitration_period,
            "deliveryDeadline": t.delivery_deadline,
        },
    }


def settled_args(
    escrow_id: int,
    milestone: int,
    how: int,
    rating: int,
    comment_hash: bytes,
    to_provider: int,
    to_client: int,
) -> dict[str, Any]:
    """Every field of an expected `MilestoneSettled`."""
    return {
        "escrowId": escrow_id,
        "milestone": milestone,
        "how": how,
        "rating": rating,
        "commentHash": comment_hash,
        "toProvider": to_provider,
        "toClient": to_client,
    }


def view(
    status: Status,
    locked: int,
    nominal: int,
    milestone_count: int,
    settled_count: int = 0,
    *,
    reserved: int = 0,
    refunded: int = 0,
    breach_count: int = 0,
) -> EscrowView:
    return EscrowView(
        status=status,
        locked=locked,
        nominal=nominal,
        reserved=reserved,
        refunded=refunded,
        milestone_count=milestone_count,
        settled_count=settled_count,
        breach_count=breach_count,
    )


def event_names(result: TxResult) -> list[str]:
    return [e.name for e in result.events]


def pending_timestamp(env: EscrowEnv) -> int:
    """The timestamp the next transaction's block will have."""
    return int(env.w3.eth.get_block("pending")["timestamp"])


def block_timestamp(env: EscrowEnv, result: TxResult) -> int:
    return int(env.w3.eth.get_block(result.block_number)["timestamp"])


def at_next_block(env: EscrowEnv, t: int) -> None:
    """Moves time so that the next transaction (or refused call) runs at exactly `t`."""
    assert t > time.time() + 60, "exact timestamps need the chain ahead of the wall clock"
    pending = pending_timestamp(env)
    if pending != t:
        assert t > pending, f"cannot go back in time: next block at {pending}, wanted {t}"
        env.advance(t - env.now())
    assert pending_timestamp(env) == t, "test setup could not reach the wanted timestamp"


def ahead(env: EscrowEnv) -> int:
    """Puts the chain an hour ahead of the wall clock; returns the next block's timestamp."""
    t = max(env.now(), int(time.time())) + 3_600
    at_next_block(env, t)
    return t


def send_fn(env: EscrowEnv, fn: ContractFunction, sender: Sender, value: int = 0) -> TxResult:
    """Sends a raw escrow call (e.g. with hand-made params), decoding reverts."""
    return send(env.w3, env.escrow.contract, fn, sender, value=value)


def escrow_fn(env: EscrowEnv, name: str, escrow_id: int, p: EscrowParams, *args: Any) -> Any:
    """`name(escrowId, p, *args)` with explicitly given params (not the remembered ones)."""
    return env.escrow.contract.functions[name](escrow_id, p.to_abi(), *args)


#: gas limit of setup transactions: a fixed limit skips the node's gas estimate, which on the
#: in-process chain costs several times the transaction itself
SETUP_GAS = 5_000_000


def quick(env: EscrowEnv, fn: ContractFunction, sender: str, value: int = 0) -> Any:
    """Sends a setup transaction without a gas estimate; it must succeed. Returns the receipt."""
    tx_hash = fn.transact({"from": sender, "value": value, "gas": SETUP_GAS})
    receipt = env.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1, f"setup transaction {fn.fn_name} failed"
    return receipt


def create(
    env: EscrowEnv, p: EscrowParams | None = None, *, token_contract: str = "TestToken"
) -> int:
    """Like `env.create` (funds and creates from the client), with quick setup transactions."""
    p = p or env.params()
    if not p.is_eth:
        token = env.contract(token_contract, p.token)
        quick(env, token.functions.mint(p.client, p.total), env.parties.deployer.address)
        quick(env, token.functions.approve(env.escrow.address, p.total), p.client)
    create_fn = env.escrow.contract.functions.createEscrow(p.to_abi())
    quick(env, create_fn, p.client, p.total if p.is_eth else 0)
    escrow_id = env.escrow.escrow_count()
    env.escrow.remember(escrow_id, p)
    return escrow_id


def create_active(
    env: EscrowEnv, p: EscrowParams | None = None, *, token_contract: str = "TestToken"
) -> int:
    """Like `env.create_active`, with quick setup transactions."""
    escrow_id = create(env, p, token_contract=token_contract)
    quick(env, env.escrow.function("accept", escrow_id), env.escrow.params(escrow_id).provider)
    return escrow_id


def deliver(env: EscrowEnv, escrow_id: int, milestone: int) -> int:
    """Submits a delivery from the provider; returns its block timestamp (the milestone's since)."""
    fn = env.escrow.function("submitDelivery", escrow_id, milestone, DELIVERY_HASH)
    receipt = quick(env, fn, env.escrow.params(escrow_id).provider)
    return int(env.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def gas_cost(env: EscrowEnv, result: TxResult) -> int:
    receipt = env.w3.eth.get_transaction_receipt(result.tx_hash)  # type: ignore[arg-type]
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
