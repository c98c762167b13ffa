"""The event fold (backend.index.ledger) rebuilds exactly what the contract's views say."""

from __future__ import annotations

import pytest

from backend.chain.transactions import event_from_log
from backend.chain.types import BreachState, MilestoneState, Status
from backend.index.ledger import ChainEvent, EscrowLedger, LedgerError, fold
from tests.support import ARBITRATION, CHALLENGE, REVIEW, EscrowEnv


def _events(env: EscrowEnv, escrow_id: int) -> list[ChainEvent]:
    out: list[ChainEvent] = []
    for name in ("EscrowCreated", "EscrowAccepted", "EscrowCancelled", "DeliverySubmitted",
                 "MilestoneSettled", "DisputeOpened", "BreachReported", "BreachChallenged",
                 "BreachSettled"):
        logs = env.escrow.contract.events[name].get_logs(
            from_block=env.deployment_block, argument_filters={"escrowId": escrow_id}
        )
        for log in logs:
            ev = event_from_log(log)
            block = env.w3.eth.get_block(ev.block_number)
            out.append(ChainEvent(ev.name, ev.args, ev.block_number, ev.log_index, ev.tx_hash,
                                  int(block["timestamp"])))
    out.sort(key=lambda e: (e.block_number, e.log_index))
    return out


def _assert_matches_views(env: EscrowEnv, led: EscrowLedger) -> None:
    view = env.escrow.get_escrow(led.escrow_id)
    assert (led.status, led.locked, led.nominal, led.reserved, led.refunded) == (
        view.status, view.locked, view.nominal, view.reserved, view.refunded
    )
    assert led.credited_provider + led.credited_client == led.total - led.locked - led.reserved
    for m in led.milestones:
        on_chain = env.escrow.get_milestone(led.escrow_id, m.index)
        assert m.state == on_chain.state
    for b in led.breaches:
        on_chain_b = env.escrow.get_breach(led.escrow_id, b.breach_id)
        assert (b.state, b.reserve) == (on_chain_b.state, on_chain_b.reserve)


def test_fold_rebuilds_an_escrow_with_every_kind_of_settlement(env: EscrowEnv) -> None:
    e = env.escrow
    escrow_id = env.create_active(env.params((1_000_003, 2_000_001, 3_000_007, 5)))
    env.deliver(escrow_id, 0)
    c = env.confirmation(escrow_id, 0, 3)
    e.confirm_with_sig(c, env.sign(c), env.parties.relayer.address)
    b0, _ = e.report_breach(escrow_id, 1, 0, b"\x01" * 32, env.oracle)
    b1, _ = e.report_breach(escrow_id, 2, 0, b"\x02" * 32, env.oracle)
    b2, _ = e.report_breach(escrow_id, 3, 5, b"\x03" * 32, env.oracle)
    e.challenge_breach(escrow_id, b1, env.provider)
    e.challenge_breach(escrow_id, b2, env.provider)
    e.resolve_breach(escrow_id, b1, False, env.arbiter)
    env.deliver(escrow_id, 1)
    e.open_dispute(escrow_id, 1, b"\x04" * 32, env.client)
    env.advance(CHALLENGE + 1)
    e.finalize_breach(escrow_id, b0, env.client)
    env.deliver(escrow_id, 2)
    env.advance(max(REVIEW, ARBITRATION) + 1)
    e.settle_stale_breach(escrow_id, b2, env.client)
    e.settle_stale_dispute(escrow_id, 1, env.client)
    e.release_after_timeout(escrow_id, 2, env.client)
    e.confirm(escrow_id, 3, 1, None, env.client)

    led = fold(_events(env, escrow_id))
    _assert_matches_views(env, led)
    assert led.status == Status.CLOSED
    assert [m.state for m in led.milestones] == [MilestoneState.SETTLED] * 4
    assert [b.state for b in led.breaches] == [
        BreachState.FINALIZED, BreachState.REJECTED, BreachState.STALE_SPLIT
    ]
    assert led.credited_client == env.escrow.credits(env.client)
    assert led.credited_provider == env.escrow.credits(env.provider)
    deposits = sum(m.amount for m in led.movements if m.kind == "deposit")
    credited = sum(
        m.amount for m in led.movements
        if m.kind in ("release", "refund", "breach_refund", "breach_payout", "cancel_refund")
    )
    assert deposits == credited == led.total


def test_fold_rebuilds_a_cancelled_escrow(env: EscrowEnv) -> None:
    escrow_id = env.create()
    env.escrow.cancel(escrow_id, env.client)
    led = fold(_events(env, escrow_id))
    _assert_matches_views(env, led)
    assert led.credited_client == led.total


def test_fold_refuses_a_history_that_does_not_start_with_creation(env: EscrowEnv) -> None:
    escrow_id = env.create_active()
    events = _events(env, escrow_id)
    with pytest.raises(LedgerError, match="starts with EscrowCreated"):
        fold(events[1:])


def test_fold_refuses_a_milestone_settled_twice(env: EscrowEnv) -> None:
    escrow_id = env.create_active()
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    events = _events(env, escrow_id)
    with pytest.raises(LedgerError, match="settled twice"):
        fold([*events, events[-1]])
