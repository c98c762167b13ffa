
"""reclaimExpired: after the delivery deadline the client takes back every never-delivered
milestone, in index order, one MilestoneSettled (how 6) each; delivered ones go on as before."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import BPS, MilestoneState, MilestoneView, SettledHow, Status
from tests.contract.support_core import (
    ZERO32,
    ahead,
    at_next_block,
    block_timestamp,
    create,
    create_active,
    deliver,
    escrow_fn,
    event_names,
    python_params_hash,
    send_fn,
    settled_args,
    view,
)
from tests.support import DAY, ETH, PAYOUTS, REVIEW, EscrowEnv

RECLAIMED = SettledHow.RECLAIMED


def _escrow(env: EscrowEnv, amounts: tuple[int, ...]) -> tuple[int, int]:
    """An active escrow with a delivery deadline ten days ahead; returns (id, deadline)."""
    deadline = ahead(env) + 10 * DAY
    p = env.params(amounts, terms=env.terms(delivery_deadline=deadline))
    return create_active(env, p), deadline


def _reclaimed(escrow_id: int, milestone: int, amount: int) -> dict[str, object]:
    return settled_args(escrow_id, milestone, RECLAIMED, 0, ZERO32, 0, amount)


def test_reclaimExpired_settles_the_never_delivered_milestones_in_index_order(
    env: EscrowEnv,
) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH, 3 * ETH, 4 * ETH, 5))
    delivered_at = deliver(env, escrow_id, 1)
    confirmed = env.escrow.confirm(escrow_id, 2, 3, None, env.client)
    confirmed_at = block_timestamp(env, confirmed)
    at_next_block(env, deadline + 1)
    result = env.escrow.reclaim_expired(escrow_id, env.client)
    assert event_names(result) == ["MilestoneSettled"] * 3
    assert [e.args for e in result.events] == [
        _reclaimed(escrow_id, 0, ETH),
        _reclaimed(escrow_id, 3, 4 * ETH),
        _reclaimed(escrow_id, 4, 5),
    ]
    for m in (0, 3, 4):
        assert env.escrow.get_milestone(escrow_id, m) == MilestoneView(
            MilestoneState.SETTLED, deadline + 1
        )
    assert env.escrow.get_milestone(escrow_id, 1) == MilestoneView(
        MilestoneState.DELIVERED, delivered_at
    )
    assert env.escrow.get_milestone(escrow_id, 2) == MilestoneView(
        MilestoneState.SETTLED, confirmed_at
    )
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 2 * ETH, 2 * ETH, 5, 4)
    provider_share = 3 * ETH * PAYOUTS[2] // BPS
    assert env.escrow.credits(env.provider) == provider_share
    assert env.escrow.credits(env.client) == 5 * ETH + 5 + (3 * ETH - provider_share)


def test_reclaimExpired_leaves_delivered_milestones_to_their_review(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH))
    at_next_block(env, deadline)
    since = deliver(env, escrow_id, 1)
    at_next_block(env, deadline + 1)
    env.escrow.reclaim_expired(escrow_id, env.client)
    # the delivered milestone can still be confirmed inside its window...
    result = env.escrow.confirm(escrow_id, 1, 4, None, env.client)
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 1, SettledHow.CONFIRMED, 4, ZERO32, 2 * ETH * 8_000 // BPS, 2 * ETH // 5
    )
    assert since + REVIEW > deadline + 1
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2, 2)


def test_reclaimExpired_closes_the_escrow_when_everything_is_settled(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH, 7))
    at_next_block(env, deadline + 1)
    result = env.escrow.reclaim_expired(escrow_id, env.client)
    assert [e.args for e in result.events] == [
        _reclaimed(escrow_id, 0, ETH),
        _reclaimed(escrow_id, 1, 2 * ETH),
        _reclaimed(escrow_id, 2, 7),
    ]
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 3, 3)
    assert env.escrow.credits(env.client) == 3 * ETH + 7
    assert env.escrow.credits(env.provider) == 0


def test_reclaimExpired_stays_active_while_a_breach_reserve_is_open(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (1_000, 2_001))
    env.escrow.report_breach(escrow_id, 3, 1, b"\x55" * 32, env.oracle)  # reserves 600 of 3001
    at_next_block(env, deadline + 1)
    result = env.escrow.reclaim_expired(escrow_id, env.client)
    # base of milestone 0 = 1000 * 2401 // 3001 = 800; the last one takes the remaining 1601
    assert [e.args for e in result.events] == [
        _reclaimed(escrow_id, 0, 800),
        _reclaimed(escrow_id, 1, 1_601),
    ]
    assert env.escrow.get_escrow(escrow_id) == view(
        Status.ACTIVE, 0, 0, 2, 2, reserved=600, breach_count=1
    )
    assert env.escrow.credits(env.client) == 2_401


def test_reclaimExpired_is_allowed_one_second_after_the_deadline(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH,))
    at_next_block(env, deadline + 1)
    result = env.escrow.reclaim_expired(escrow_id, env.client)
    assert block_timestamp(env, result) == deadline + 1
    assert result.event("MilestoneSettled").args == _reclaimed(escrow_id, 0, ETH)


def test_reclaimExpired_refuses_at_exactly_the_deadline(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH))
    at_next_block(env, deadline)
    with pytest.raises(rt.EscrowWindowOpen) as ei:
        env.escrow.reclaim_expired(escrow_id, env.client)
    assert ei.value.fields == {"endsAt": deadline, "timestamp": deadline}
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 3 * ETH, 3 * ETH, 2)
    assert env.escrow.credits(env.client) == 0


def test_reclaimExpired_refuses_before_the_deadline(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH))
    at_next_block(env, deadline - DAY)
    with pytest.raises(rt.EscrowWindowOpen) as ei:
        env.escrow.reclaim_expired(escrow_id, env.client)
    assert ei.value.fields == {"endsAt": deadline, "timestamp": deadline - DAY}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)


@pytest.mark.parametrize("who", ["provider", "stranger", "oracle", "arbiter"])
def test_reclaimExpired_refuses_a_caller_other_than_the_client(env: EscrowEnv, who: str) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH))
    at_next_block(env, deadline + 1)
    caller = getattr(env.parties, who).address
    with pytest.raises(rt.EscrowUnauthorizedCaller) as ei:
        env.escrow.reclaim_expired(escrow_id, caller)
    assert ei.value.fields == {"caller": caller, "required": env.client}
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 3 * ETH, 3 * ETH, 2)


def test_reclaimExpired_refuses_when_every_milestone_was_delivered(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH))
    deliver(env, escrow_id, 0)
    deliver(env, escrow_id, 1)
    at_next_block(env, deadline + 1)
    with pytest.raises(rt.EscrowNothingToReclaim) as ei:
        env.escrow.reclaim_expired(escrow_id, env.client)
    assert ei.value.fields == {"escrowId": escrow_id}
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 3 * ETH, 3 * ETH, 2)


def test_reclaimExpired_refuses_a_second_reclaim(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH))
    deliver(env, escrow_id, 1)
    at_next_block(env, deadline + 1)
    env.escrow.reclaim_expired(escrow_id, env.client)
    with pytest.raises(rt.EscrowNothingToReclaim) as ei:
        env.escrow.reclaim_expired(escrow_id, env.client)
    assert ei.value.fields == {"escrowId": escrow_id}
    assert env.escrow.credits(env.client) == ETH


def test_reclaimExpired_refuses_a_reclaimed_escrow_with_an_open_reserve(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (1_000, 2_001))
    env.escrow.report_breach(escrow_id, 1, 1, b"\x55" * 32, env.oracle)
    at_next_block(env, deadline + 1)
    env.escrow.reclaim_expired(escrow_id, env.client)
    with pytest.raises(rt.EscrowNothingToReclaim) as ei:
        env.escrow.reclaim_expired(escrow_id, env.client)
    assert ei.value.fields == {"escrowId": escrow_id}


def test_reclaimExpired_refuses_a_closed_escrow(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH,))
    at_next_block(env, deadline + 1)
    env.escrow.reclaim_expired(escrow_id, env.client)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.reclaim_expired(escrow_id, env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.CLOSED,
        "required": Status.ACTIVE,
    }


def test_reclaimExpired_refuses_a_proposed_escrow(env: EscrowEnv) -> None:
    deadline = ahead(env) + DAY
    escrow_id = create(env, env.params(terms=env.terms(delivery_deadline=deadline)))
    at_next_block(env, deadline + 1)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.reclaim_expired(escrow_id, env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.PROPOSED,
        "required": Status.ACTIVE,
    }


def test_reclaimExpired_refuses_params_with_an_earlier_deadline(env: EscrowEnv) -> None:
    escrow_id, deadline = _escrow(env, (ETH, 2 * ETH))
    p = env.escrow.params(escrow_id)
    earlier = replace(p, terms=replace(p.terms, delivery_deadline=deadline - 5 * DAY))
    at_next_block(env, deadline - DAY)
    with pytest.raises(rt.EscrowParamsMismatch) as ei:
        send_fn(env, escrow_fn(env, "reclaimExpired", escrow_id, earlier), env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "expected": python_params_hash(p),
        "actual": python_params_hash(earlier),
    }
    assert env.escrow.credits(env.client) == 0
