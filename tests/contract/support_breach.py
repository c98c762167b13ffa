"""Helpers shared by the dispute, breach, withdraw and view tests.

- `at(env, t)`: the next transaction is mined at exactly `t` (eth-tester mines each transaction
  in its own block, one second after the latest one).
- `check_books(env, escrow_id)`: the per-escrow money rules of docs/interface.md section 1,
  rebuilt from the escrow's events and views.
- `contract_account` / `execute`: drive a test contract account (TestAccount and subclasses)
  through its owner, the deployer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3.contract.contract import Contract

from backend.chain.deploy import deploy_contract
from backend.chain.transactions import TxResult, send
from backend.chain.types import (
    ZERO_HASH,
    BreachState,
    EscrowParams,
    MilestoneState,
    Status,
)
from tests.support import ARBITRATION, CHALLENGE, EscrowEnv

EVIDENCE = bytes.fromhex("e1" * 32)
DELIVERY = bytes.fromhex("22" * 32)
REASON = bytes.fromhex("d1" * 32)
BPS = 10_000

#: the ABI type of `EscrowParams`, as `abi.encode(p)` sees it (one dynamic tuple)
PARAMS_ABI_TYPE = (
    "(address,address,address,address,address,bytes32,uint256[],"
    "(uint16[5],uint16,uint16,uint16,uint16,uint32,uint32,uint32,uint64))"
)


def params_hash(params: EscrowParams) -> bytes:
    """keccak256(abi.encode(p)), computed with eth_abi, independent of the contract."""
    return keccak(abi_encode([PARAMS_ABI_TYPE], [params.to_abi()]))


# ---------------------------------------------------------------- escrows

#: two odd milestone amounts, so every reserve and every pro-rata base rounds down
AMOUNTS = (1_000_003, 2_000_004)
TOTAL = sum(AMOUNTS)  # 3_000_007
#: reserves under the default terms of tests.support (500 / 1000 / 2000 bps, cap 3000 bps)
KIND_BPS = {1: 500, 2: 1_000, 3: 2_000}
RESERVE = {kind: bps * TOTAL // 10_000 for kind, bps in KIND_BPS.items()}
CAP = 3_000 * TOTAL // 10_000
#: advancing this far passes the challenge (arbitration) period of a report (challenge) just made
CHALLENGE_AFTER = CHALLENGE + 10
ARBITRATION_AFTER = ARBITRATION + 10


#: gas for setup transactions sent without the client's gas estimate
SETUP_GAS = 5_000_000


def quick(env: EscrowEnv, name: str, escrow_id: int, *args: Any, sender: str) -> int:
    """Sends a *setup* call `name(escrowId, params, *args)` with a fixed gas limit, skipping the
    gas-estimate simulation the client runs first (most of a transaction's cost on eth-tester).
    It must succeed; returns the block timestamp. The calls under test go through the client."""
    fn = env.escrow.function(name, escrow_id, *args)
    tx_hash = fn.transact({"from": sender, "gas": SETUP_GAS})
    receipt = env.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1, f"setup call {name} reverted"
    return int(env.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def quick_create(env: EscrowEnv, params: EscrowParams, token_contract: str = "TestToken") -> int:
    """`env.create` without the gas estimate (see `quick`)."""
    if not params.is_eth:
        env.fund_token(params.token, params.client, params.total, token_contract)
    escrow_id = env.escrow.escrow_count() + 1
    fn = env.escrow.contract.functions.createEscrow(params.to_abi())
    value = params.total if params.is_eth else 0
    tx_hash = fn.transact({"from": params.client, "gas": SETUP_GAS, "value": value})
    assert env.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    assert env.escrow.params_hash(escrow_id) == params_hash(params)
    env.escrow.remember(escrow_id, params)
    return escrow_id


def quick_active(env: EscrowEnv, params: EscrowParams, token_contract: str = "TestToken") -> int:
    escrow_id = quick_create(env, params, token_contract)
    quick(env, "accept", escrow_id, sender=params.provider)
    return escrow_id


def active(env: EscrowEnv, amounts: tuple[int, ...] = AMOUNTS, **terms: Any) -> int:
    """An accepted ETH escrow with the default parties; `terms` override the default terms."""
    return quick_active(env, env.params(amounts, terms=env.terms(**terms)))


def deliver(env: EscrowEnv, escrow_id: int, milestone: int) -> int:
    """The provider delivers the milestone; returns the delivery time."""
    return quick(env, "submitDelivery", escrow_id, milestone, DELIVERY, sender=env.provider)


def confirm(env: EscrowEnv, escrow_id: int, milestone: int, rating: int = 5) -> int:
    return quick(env, "confirm", escrow_id, milestone, rating, ZERO_HASH, sender=env.client)


def only_event(result: TxResult, name: str) -> dict[str, Any]:
    """The args of the transaction's one event, which must be `name`."""
    assert [e.name for e in result.events] == [name]
    return result.events[0].args


# ------------------------------------------------------------------- time


def at(env: EscrowEnv, timestamp: int) -> None:
    """Moves the chain so the next transaction (or simulated call) runs at `timestamp`."""
    target = timestamp - 1
    gap = target - env.now()
    assert gap >= 0, f"cannot go back in time to {timestamp} (now {env.now()})"
    if gap:
        env.advance(gap)
    if env.now() == target - 1:
        # eth-tester mines `advance(n)`'s block at now + n - 1 (and advance(1) is a no-op)
        env.advance(2)
    assert env.now() == target


def tx_time(env: EscrowEnv, result: TxResult) -> int:
    return int(env.w3.eth.get_block(result.block_number)["timestamp"])


# ------------------------------------------------------------------ actions


def report(
    env: EscrowEnv, escrow_id: int, kind: int, period: int, evidence: bytes = EVIDENCE
) -> tuple[int, TxResult]:
    return env.escrow.report_breach(escrow_id, kind, period, evidence, env.oracle)


def reported_at(env: EscrowEnv, escrow_id: int, breach_id: int) -> int:
    return env.escrow.get_breach(escrow_id, breach_id).reported_at


def challenged(env: EscrowEnv, escrow_id: int, kind: int = 1, period: int = 1) -> tuple[int, int]:
    """Reports a breach and has the provider challenge it; returns (breachId, challengedAt)."""
    breach_id = env.escrow.get_escrow(escrow_id).breach_count
    quick(env, "reportBreach", escrow_id, kind, period, EVIDENCE, sender=env.oracle)
    return breach_id, quick(env, "challengeBreach", escrow_id, breach_id, sender=env.provider)


def settle_all(env: EscrowEnv, escrow_id: int, rating: int = 5) -> None:
    """The client confirms every milestone that is not settled yet."""
    for i in range(len(env.escrow.params(escrow_id).milestone_amounts)):
        if env.escrow.get_milestone(escrow_id, i).state != MilestoneState.SETTLED:
            confirm(env, escrow_id, i, rating)


# ------------------------------------------------------------- contract accounts


def contract_account(env: EscrowEnv, name: str) -> Contract:
    """Deploys a TestAccount-like contract owned by the deployer."""
    address, _ = deploy_contract(env.w3, name, env.parties.deployer.address)
    return env.contract(name, address)


def execute(env: EscrowEnv, account: Contract, data: Any, value: int = 0) -> TxResult:
    """The account's owner makes it call the escrow with `data`; reverts keep their error."""
    fn = account.functions.execute(env.escrow.address, value, data)
    return send(env.w3, env.escrow.contract, fn, env.parties.deployer.address)


def escrow_call(env: EscrowEnv, name: str, escrow_id: int, *args: Any) -> Any:
    """Calldata of `name(escrowId, params, *args)`, for `execute`."""
    return env.escrow.function(name, escrow_id, *args)._encode_transaction_data()


# -------------------------------------------------------------------- books


@dataclass(frozen=True)
class Payouts:
    """Everything an escrow credited, rebuilt from its events."""

    to_provider: int
    to_client: int
    refunded: int  # breach refunds (BreachSettled.toClient)
    cancelled: bool


def payouts(env: EscrowEnv, escrow_id: int) -> Payouts:
    events = env.escrow.contract.events
    kw: dict[str, Any] = {
        "from_block": env.deployment_block,
        "to_block": "latest",
        "argument_filters": {"escrowId": escrow_id},
    }
    settled = events.MilestoneSettled.get_logs(**kw)
    breaches = events.BreachSettled.get_logs(**kw)
    cancelled = events.EscrowCancelled.get_logs(**kw)
    refunded = sum(int(e["args"]["toClient"]) for e in breaches)
    return Payouts(
        to_provider=sum(int(e["args"]["toProvider"]) for e in settled)
        + sum(int(e["args"]["toProvider"]) for e in breaches),
        to_client=sum(int(e["args"]["toClient"]) for e in settled)
        + refunded
        + sum(int(e["args"]["refund"]) for e in cancelled),
        refunded=refunded,
        cancelled=bool(cancelled),
    )


def check_books(env: EscrowEnv, escrow_id: int, *, ledger: bool = True) -> Payouts:
    """Asserts the per-escrow money rules; with `ledger`, also that the parties' credits are
    exactly what this escrow paid them (true when they take part in no other escrow of that
    token and have not withdrawn)."""
    p = env.escrow.params(escrow_id)
    view = env.escrow.get_escrow(escrow_id)
    paid = payouts(env, escrow_id)

    # credited to provider and client together == total - locked - reserved
    assert paid.to_provider + paid.to_client == p.total - view.locked - view.reserved
    assert view.refunded == paid.refunded

    # nominal and settledCount follow the milestones (a cancelled escrow settles none)
    amounts = p.milestone_amounts
    states = [env.escrow.get_milestone(escrow_id, i).state for i in range(len(amounts))]
    unsettled = [a for a, s in zip(amounts, states, strict=True) if s != MilestoneState.SETTLED]
    assert view.milestone_count == len(amounts)
    if paid.cancelled:
        assert (view.status, view.nominal, view.settled_count) == (Status.CLOSED, 0, 0)
        assert paid.to_client == p.total
    else:
        assert view.nominal == sum(unsettled)
        assert view.settled_count == len(amounts) - len(unsettled)

    # reserved is the sum of the open reports' reserves
    breaches = [env.escrow.get_breach(escrow_id, b) for b in range(view.breach_count)]
    open_states = (BreachState.REPORTED, BreachState.CHALLENGED)
    assert view.reserved == sum(b.reserve for b in breaches if b.state in open_states)
    assert all(b.state != BreachState.NONE for b in breaches)

    if view.status == Status.ACTIVE:
        assert view.nominal != 0 or view.reserved != 0, "an escrow with nothing left must close"
    if view.status == Status.CLOSED:
        assert (view.locked, view.nominal, view.reserved) == (0, 0, 0)

    if ledger:
        assert env.escrow.credits(p.provider, p.token) == paid.to_provider
        assert env.escrow.credits(p.client, p.token) == paid.to_client
    return paid


def check_all_books(env: EscrowEnv) -> None:
    """`check_books` (event-based part) for every escrow on the chain."""
    for escrow_id in range(1, env.escrow.escrow_count() + 1):
        check_books(env, escrow_id, ledger=False)


def held(env: EscrowEnv, token: str, escrow_ids: list[int], accounts: list[str]) -> int:
    """Sum of the accounts' credits in `token` plus locked + reserved of the escrows."""
    credits = sum(env.escrow.credits(a, token) for a in set(accounts))
    views = [env.escrow.get_escrow(e) for e in escrow_ids]
    return credits + sum(v.locked + v.reserved for v in views)


def check_holdings(
    env: EscrowEnv, token: str, escrow_ids: list[int], accounts: list[str], name: str = "TestToken"
) -> None:
    """The contract's balance of `token` is exactly what it owes: credits + locked + reserved."""
    assert env.balance(env.escrow.address, token, name) == held(env, token, escrow_ids, accounts)
