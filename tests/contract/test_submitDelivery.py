
"""submitDelivery: the provider marks a milestone delivered (opening its review window), up to
and including the delivery deadline."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import MilestoneState, MilestoneView, Status
from tests.contract.support_core import (
    DELIVERY_HASH,
    ahead,
    at_next_block,
    block_timestamp,
    create,
    create_active,
    deliver,
    event_names,
    view,
)
from tests.support import ETH, EscrowEnv

HASH = bytes.fromhex("ab" * 31 + "cd")


def test_submitDelivery_marks_the_milestone_delivered(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((ETH, 2 * ETH)))
    result = env.escrow.submit_delivery(escrow_id, 1, HASH, env.provider)
    assert event_names(result) == ["DeliverySubmitted"]
    assert result.event("DeliverySubmitted").args == {
        "escrowId": escrow_id,
        "milestone": 1,
        "deliveryHash": HASH,
    }
    assert env.escrow.get_milestone(escrow_id, 1) == MilestoneView(
        MilestoneState.DELIVERED, block_timestamp(env, result)
    )
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 3 * ETH, 3 * ETH, 2)
    assert env.escrow.credits(env.provider) == 0


def test_submitDelivery_accepts_a_zero_delivery_hash(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    result = env.escrow.submit_delivery(escrow_id, 0, None, env.provider)
    assert result.event("DeliverySubmitted").args == {
        "escrowId": escrow_id,
        "milestone": 0,
        "deliveryHash": b"\x00" * 32,
    }
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DELIVERED


def test_submitDelivery_keeps_each_milestone_time_apart(env: EscrowEnv) -> None:
    """Milestones share storage words four to a slot; each keeps its own state and time."""
    escrow_id = create_active(env, env.params(tuple(range(1, 65))))
    start = ahead(env)
    delivered = {}
    for step, m in enumerate([3, 4, 2, 63, 0, 60]):
        at_next_block(env, start + 1_000 * step)
        delivered[m] = deliver(env, escrow_id, m)
        assert delivered[m] == start + 1_000 * step
    for m in range(64):
        expected = (
            MilestoneView(MilestoneState.DELIVERED, delivered[m])
            if m in delivered
            else MilestoneView(MilestoneState.NONE, 0)
        )
        assert env.escrow.get_milestone(escrow_id, m) == expected


@pytest.mark.parametrize("who", ["client", "stranger", "oracle", "arbiter"])
def test_submitDelivery_refuses_a_caller_other_than_the_provider(env: EscrowEnv, who: str) -> None:
    escrow_id = create_active(env)
    caller = getattr(env.parties, who).address
    with pytest.raises(rt.EscrowUnauthorizedCaller) as ei:
        env.escrow.submit_delivery(escrow_id, 0, HASH, caller)
    assert ei.value.fields == {"caller": caller, "required": env.provider}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)


def test_submitDelivery_refuses_a_proposed_escrow(env: EscrowEnv) -> None:
    escrow_id = create(env)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.submit_delivery(escrow_id, 0, HASH, env.provider)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.PROPOSED,
        "required": Status.ACTIVE,
    }
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)


def test_submitDelivery_refuses_a_closed_escrow(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((ETH,)))
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.submit_delivery(escrow_id, 0, HASH, env.provider)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.CLOSED,
        "required": Status.ACTIVE,
    }


@pytest.mark.parametrize("milestone", [2, 3, 64, 2**256 - 1])
def test_submitDelivery_refuses_a_milestone_out_of_range(env: EscrowEnv, milestone: int) -> None:
    escrow_id = create_active(env, env.params((ETH, 2 * ETH)))
    with pytest.raises(rt.EscrowMilestoneOutOfRange) as ei:
        env.escrow.submit_delivery(escrow_id, milestone, HASH, env.provider)
    assert ei.value.fields == {"milestone": milestone, "count": 2}


def test_submitDelivery_refuses_a_second_delivery(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    since = deliver(env, escrow_id, 0)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.submit_delivery(escrow_id, 0, HASH, env.provider)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DELIVERED,
    }
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.DELIVERED, since)


def test_submitDelivery_refuses_a_settled_milestone(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    env.escrow.confirm(escrow_id, 0, 3, None, env.client)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.submit_delivery(escrow_id, 0, HASH, env.provider)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.SETTLED,
    }


def test_submitDelivery_refuses_a_disputed_milestone(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    deliver(env, escrow_id, 0)
    env.escrow.open_dispute(escrow_id, 0, b"\x44" * 32, env.client)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.submit_delivery(escrow_id, 0, HASH, env.provider)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DISPUTED,
    }


def test_submitDelivery_is_allowed_at_exactly_the_delivery_deadline(env: EscrowEnv) -> None:
    deadline = ahead(env) + 10 * 86_400
    escrow_id = create_active(env, env.params(terms=env.terms(delivery_deadline=deadline)))
    at_next_block(env, deadline)
    result = env.escrow.submit_delivery(escrow_id, 0, DELIVERY_HASH, env.provider)
    assert block_timestamp(env, result) == deadline
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(
        MilestoneState.DELIVERED, deadline
    )


def test_submitDelivery_refuses_one_second_after_the_delivery_deadline(env: EscrowEnv) -> None:
    deadline = ahead(env) + 10 * 86_400
    escrow_id = create_active(env, env.params(terms=env.terms(delivery_deadline=deadline)))
    at_next_block(env, deadline + 1)
    with pytest.raises(rt.EscrowWindowClosed) as ei:
        env.escrow.submit_delivery(escrow_id, 0, DELIVERY_HASH, env.provider)
    assert ei.value.fields == {"endedAt": deadline, "timestamp": deadline + 1}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)
