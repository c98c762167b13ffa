"""accept: the provider agrees to a proposal, which makes the escrow Active."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import MilestoneState, MilestoneView, Status
from tests.contract.support_core import (
    create,
    create_active,
    escrow_fn,
    event_names,
    python_params_hash,
    send_fn,
    view,
)
from tests.support import ETH, EscrowEnv


def test_accept_makes_the_escrow_active(env: EscrowEnv) -> None:
    escrow_id = create(env, env.params((ETH, 2 * ETH)))
    held = env.balance(env.escrow.address)
    result = env.escrow.accept(escrow_id, env.provider)
    assert event_names(result) == ["EscrowAccepted"]
    assert result.event("EscrowAccepted").args == {"escrowId": escrow_id}
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 3 * ETH, 3 * ETH, 2)
    assert env.escrow.credits(env.client) == 0
    assert env.escrow.credits(env.provider) == 0
    assert env.balance(env.escrow.address) == held


def test_accept_keeps_the_commitment(env: EscrowEnv) -> None:
    p = env.params((ETH,), token=env.token)
    escrow_id = create(env, p)
    env.escrow.accept(escrow_id, env.provider)
    assert env.escrow.params_hash(escrow_id) == python_params_hash(p)
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)


def test_accept_lets_the_provider_deliver(env: EscrowEnv) -> None:
    escrow_id = create(env)
    with pytest.raises(rt.EscrowInvalidStatus):
        env.deliver(escrow_id, 0)
    env.escrow.accept(escrow_id, env.provider)
    env.deliver(escrow_id, 0)
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DELIVERED


def test_accept_acts_on_one_escrow_only(env: EscrowEnv) -> None:
    first = create(env, env.params((ETH,)))
    second = create(env, env.params((2 * ETH,)))
    env.escrow.accept(second, env.provider)
    assert env.escrow.get_escrow(first) == view(Status.PROPOSED, ETH, ETH, 1)
    assert env.escrow.get_escrow(second) == view(Status.ACTIVE, 2 * ETH, 2 * ETH, 1)


@pytest.mark.parametrize("who", ["client", "stranger", "oracle", "arbiter"])
def test_accept_refuses_a_caller_other_than_the_provider(env: EscrowEnv, who: str) -> None:
    escrow_id = create(env)
    caller = getattr(env.parties, who).address
    with pytest.raises(rt.EscrowUnauthorizedCaller) as ei:
        env.escrow.accept(escrow_id, caller)
    assert ei.value.fields == {"caller": caller, "required": env.provider}
    assert env.escrow.get_escrow(escrow_id).status == Status.PROPOSED


def test_accept_refuses_an_active_escrow(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.accept(escrow_id, env.provider)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.ACTIVE,
        "required": Status.PROPOSED,
    }


def test_accept_refuses_a_cancelled_escrow(env: EscrowEnv) -> None:
    escrow_id = create(env)
    env.escrow.cancel(escrow_id, env.client)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.accept(escrow_id, env.provider)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.CLOSED,
        "required": Status.PROPOSED,
    }
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2)


def test_accept_refuses_a_stranger_naming_himself_provider(env: EscrowEnv) -> None:
    p = env.params()
    escrow_id = create(env, p)
    stranger = env.parties.stranger.address
    forged = replace(p, provider=stranger)
    with pytest.raises(rt.EscrowParamsMismatch) as ei:
        send_fn(env, escrow_fn(env, "accept", escrow_id, forged), stranger)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "expected": python_params_hash(p),
        "actual": python_params_hash(forged),
    }
    assert env.escrow.get_escrow(escrow_id).status == Status.PROPOSED
