"""The whole escrow lifecycle, run on the in-process chain and on a real Hardhat node."""

from __future__ import annotations

from backend.chain.types import BreachState, MilestoneState, SettledHow, Status
from tests.support import CHALLENGE, ETH, EscrowEnv


def test_lifecycle_settles_confirms_refunds_and_pays_out_exactly(any_env: EscrowEnv) -> None:
    env = any_env
    e = env.escrow
    relayer = env.parties.relayer.address
    start_balance = env.balance(e.address)

    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    assert env.balance(e.address) == start_balance + 3 * ETH

    env.deliver(escrow_id, 0)
    signed = env.confirmation(escrow_id, 0, rating=4, comment_hash=b"\x33" * 32)
    result = e.confirm_with_sig(signed, env.sign(signed), relayer)
    settled = result.event("MilestoneSettled").args
    assert settled["how"] == SettledHow.SIGNED
    assert settled["toProvider"] == ETH * 8_000 // 10_000
    assert settled["toClient"] == ETH - settled["toProvider"]
    assert e.get_milestone(escrow_id, 0).state == MilestoneState.SETTLED

    breach_id, reported = e.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)
    reserve = reported.event("BreachReported").args["reserved"]
    assert reserve == 3 * ETH * 500 // 10_000
    env.advance(CHALLENGE + 1)
    finalized = e.finalize_breach(escrow_id, breach_id, relayer).event("BreachSettled").args
    assert (finalized["outcome"], finalized["toClient"]) == (1, reserve)
    assert e.get_breach(escrow_id, breach_id).state == BreachState.FINALIZED

    env.deliver(escrow_id, 1)
    last = e.confirm(escrow_id, 1, 5, None, env.client).event("MilestoneSettled").args
    assert last["toProvider"] == 2 * ETH - reserve  # the last milestone takes all of locked
    view = e.get_escrow(escrow_id)
    assert (view.status, view.locked, view.reserved, view.refunded) == (
        Status.CLOSED, 0, 0, reserve
    )

    provider_credit = e.credits(env.provider)
    client_credit = e.credits(env.client)
    assert provider_credit + client_credit == 3 * ETH
    assert client_credit == settled["toClient"] + reserve
    before = env.balance(env.provider)
    receipt = e.withdraw(None, env.provider)
    gas_cost = receipt.gas_used * int(
        env.w3.eth.get_transaction_receipt(receipt.tx_hash)["effectiveGasPrice"]
    )
    assert env.balance(env.provider) == before + provider_credit - gas_cost
    e.withdraw(None, env.client)
    assert e.credits(env.provider) == e.credits(env.client) == 0
    assert env.balance(e.address) == start_balance
