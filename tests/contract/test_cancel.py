"""cancel: the client takes a proposal back; the total is credited to the client and the escrow
is Closed for good."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import ZERO_ADDRESS, MilestoneState, MilestoneView, Status
from tests.contract.support_core import (
    DELIVERY_HASH,
    create,
    create_active,
    escrow_fn,
    event_names,
    python_params_hash,
    send_fn,
    view,
)
from tests.support import ETH, EscrowEnv


def test_cancel_credits_the_total_back_to_the_client(env: EscrowEnv) -> None:
    escrow_id = create(env, env.params((ETH, 2 * ETH + 1)))
    held = env.balance(env.escrow.address)
    result = env.escrow.cancel(escrow_id, env.client)
    assert event_names(result) == ["EscrowCancelled"]
    assert result.event("EscrowCancelled").args == {"escrowId": escrow_id, "refund": 3 * ETH + 1}
    assert env.escrow.credits(env.client) == 3 * ETH + 1
    assert env.escrow.credits(env.provider) == 0
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2)
    assert env.balance(env.escrow.address) == held  # a credit, not a transfer


def test_cancel_credits_a_token_escrow_in_its_token(env: EscrowEnv) -> None:
    escrow_id = create(env, env.params((700, 300), token=env.token))
    result = env.escrow.cancel(escrow_id, env.client)
    assert result.event("EscrowCancelled").args == {"escrowId": escrow_id, "refund": 1_000}
    assert env.escrow.credits(env.client, env.token) == 1_000
    assert env.escrow.credits(env.client, ZERO_ADDRESS) == 0
    assert env.balance(env.escrow.address, env.token) == 1_000
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2)


def test_cancel_credit_can_be_withdrawn(env: EscrowEnv) -> None:
    escrow_id = create(env, env.params((700, 300), token=env.token))
    env.escrow.cancel(escrow_id, env.client)
    env.escrow.withdraw(env.token, env.client)
    assert env.balance(env.client, env.token) == 1_000
    assert env.escrow.credits(env.client, env.token) == 0


def test_cancel_adds_to_an_existing_credit(env: EscrowEnv) -> None:
    first = create(env, env.params((5, 6)))
    second = create(env, env.params((7,)))
    env.escrow.cancel(first, env.client)
    env.escrow.cancel(second, env.client)
    assert env.escrow.credits(env.client) == 18


def test_cancel_leaves_other_escrows_alone(env: EscrowEnv) -> None:
    kept = create(env, env.params((ETH,)))
    cancelled = create(env, env.params((2 * ETH,)))
    env.escrow.cancel(cancelled, env.client)
    assert env.escrow.get_escrow(kept) == view(Status.PROPOSED, ETH, ETH, 1)
    assert env.escrow.credits(env.client) == 2 * ETH


@pytest.mark.parametrize("who", ["provider", "stranger", "oracle", "arbiter"])
def test_cancel_refuses_a_caller_other_than_the_client(env: EscrowEnv, who: str) -> None:
    escrow_id = create(env)
    caller = getattr(env.parties, who).address
    with pytest.raises(rt.EscrowUnauthorizedCaller) as ei:
        env.escrow.cancel(escrow_id, caller)
    assert ei.value.fields == {"caller": caller, "required": env.client}
    assert env.escrow.get_escrow(escrow_id) == view(Status.PROPOSED, 3 * ETH, 3 * ETH, 2)


def test_cancel_refuses_an_accepted_escrow(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.cancel(escrow_id, env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.ACTIVE,
        "required": Status.PROPOSED,
    }
    assert env.escrow.credits(env.client) == 0
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 3 * ETH, 3 * ETH, 2)


def test_cancel_refuses_a_second_cancel(env: EscrowEnv) -> None:
    escrow_id = create(env)
    env.escrow.cancel(escrow_id, env.client)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.cancel(escrow_id, env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.CLOSED,
        "required": Status.PROPOSED,
    }
    assert env.escrow.credits(env.client) == 3 * ETH


def test_cancel_refuses_a_stranger_naming_himself_client(env: EscrowEnv) -> None:
    p = env.params()
    escrow_id = create(env, p)
    stranger = env.parties.stranger.address
    forged = replace(p, client=stranger)
    with pytest.raises(rt.EscrowParamsMismatch) as ei:
        send_fn(env, escrow_fn(env, "cancel", escrow_id, forged), stranger)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "expected": python_params_hash(p),
        "actual": python_params_hash(forged),
    }
    assert env.escrow.credits(stranger) == 0
    assert env.escrow.credits(env.client) == 0


def test_cancel_leaves_nothing_to_do_afterwards(env: EscrowEnv) -> None:
    escrow_id = create(env)
    env.escrow.cancel(escrow_id, env.client)
    closed = {"escrowId": escrow_id, "status": Status.CLOSED}
    attempts = [
        (lambda: env.escrow.accept(escrow_id, env.provider), Status.PROPOSED),
        (lambda: env.escrow.cancel(escrow_id, env.client), Status.PROPOSED),
        (
            lambda: env.escrow.submit_delivery(escrow_id, 0, DELIVERY_HASH, env.provider),
            Status.ACTIVE,
        ),
        (lambda: env.escrow.confirm(escrow_id, 0, 5, None, env.client), Status.ACTIVE),
        (lambda: env.escrow.release_after_timeout(escrow_id, 0, env.client), Status.ACTIVE),
        (lambda: env.escrow.reclaim_expired(escrow_id, env.client), Status.ACTIVE),
        (
            lambda: env.escrow.report_breach(escrow_id, 1, 1, b"\x33" * 32, env.oracle),
            Status.ACTIVE,
        ),
    ]
    for attempt, required in attempts:
        with pytest.raises(rt.EscrowInvalidStatus) as ei:
            attempt()
        assert ei.value.fields == {**closed, "required": required}
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2)
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.credits(env.client) == 3 * ETH
    assert env.escrow.credits(env.provider) == 0
