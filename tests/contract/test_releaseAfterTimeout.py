
"""releaseAfterTimeout: once a delivered milestone's review window has passed undisputed, anyone
settles it at rating 5 (10000 bps)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import MilestoneState, MilestoneView, SettledHow, Status
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
from tests.support import ETH, REVIEW, EscrowEnv

TIMEOUT = SettledHow.TIMEOUT


def _delivered(env: EscrowEnv, amounts: tuple[int, ...] = (ETH, 2 * ETH)) -> tuple[int, int]:
    """An active escrow whose milestone 0 was delivered (chain ahead of the wall clock)."""
    escrow_id = create_active(env, env.params(amounts))
    ahead(env)
    return escrow_id, deliver(env, escrow_id, 0)


@pytest.mark.parametrize("who", ["stranger", "relayer", "provider", "client", "oracle"])
def test_releaseAfterTimeout_lets_anyone_settle_one_second_after_the_window(
    env: EscrowEnv, who: str
) -> None:
    escrow_id, since = _delivered(env)
    at_next_block(env, since + REVIEW + 1)
    result = env.escrow.release_after_timeout(escrow_id, 0, getattr(env.parties, who).address)
    assert block_timestamp(env, result) == since + REVIEW + 1
    assert event_names(result) == ["MilestoneSettled"]
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, TIMEOUT, 5, ZERO32, ETH, 0
    )
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(
        MilestoneState.SETTLED, since + REVIEW + 1
    )
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 2 * ETH, 2 * ETH, 2, 1)
    assert env.escrow.credits(env.provider) == ETH
    assert env.escrow.credits(env.client) == 0
    for other in ("stranger", "relayer", "oracle"):
        assert env.escrow.credits(getattr(env.parties, other).address) == 0


def test_releaseAfterTimeout_pays_in_full_whatever_the_payout_table(env: EscrowEnv) -> None:
    terms = env.terms(rating_payout_bps=(0, 0, 0, 0, 10_000))
    escrow_id = create_active(env, env.params((999, 1), terms=terms))
    ahead(env)
    since = deliver(env, escrow_id, 0)
    at_next_block(env, since + REVIEW + 1)
    result = env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, TIMEOUT, 5, ZERO32, 999, 0
    )


def test_releaseAfterTimeout_of_the_last_milestone_closes_the_escrow(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((ETH, 2 * ETH)))
    env.escrow.confirm(escrow_id, 0, 1, None, env.client)  # 20% of 1 ETH to the provider
    ahead(env)
    since = deliver(env, escrow_id, 1)
    at_next_block(env, since + REVIEW + 1)
    result = env.escrow.release_after_timeout(escrow_id, 1, env.parties.stranger.address)
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 1, TIMEOUT, 5, ZERO32, 2 * ETH, 0
    )
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2, 2)
    assert env.escrow.credits(env.provider) == 2 * ETH + ETH // 5
    assert env.escrow.credits(env.client) == ETH - ETH // 5


def test_releaseAfterTimeout_pays_the_share_a_breach_reserve_left(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((1_000, 2_001)))
    env.escrow.report_breach(escrow_id, 3, 1, b"\x55" * 32, env.oracle)  # reserves 600
    ahead(env)
    since = deliver(env, escrow_id, 0)
    at_next_block(env, since + REVIEW + 1)
    result = env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    # base = 1000 * 2401 // 3001 = 800
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, TIMEOUT, 5, ZERO32, 800, 0
    )
    assert env.escrow.get_escrow(escrow_id) == view(
        Status.ACTIVE, 1_601, 2_001, 2, 1, reserved=600, breach_count=1
    )


def test_releaseAfterTimeout_refuses_at_exactly_the_end_of_the_window(env: EscrowEnv) -> None:
    escrow_id, since = _delivered(env)
    at_next_block(env, since + REVIEW)
    with pytest.raises(rt.EscrowWindowOpen) as ei:
        env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    assert ei.value.fields == {"endsAt": since + REVIEW, "timestamp": since + REVIEW}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.DELIVERED, since)
    assert env.escrow.credits(env.provider) == 0


def test_releaseAfterTimeout_refuses_right_after_delivery(env: EscrowEnv) -> None:
    escrow_id, since = _delivered(env)
    with pytest.raises(rt.EscrowWindowOpen) as ei:
        env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    assert ei.value.fields == {"endsAt": since + REVIEW, "timestamp": since + 1}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.DELIVERED, since)


def test_releaseAfterTimeout_refuses_an_undelivered_milestone(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)
    env.advance(REVIEW + 10)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.release_after_timeout(escrow_id, 1, env.parties.stranger.address)
    assert ei.value.fields == {"escrowId": escrow_id, "milestone": 1, "state": MilestoneState.NONE}
    assert env.escrow.get_milestone(escrow_id, 1) == MilestoneView(MilestoneState.NONE, 0)


def test_releaseAfterTimeout_refuses_a_disputed_milestone(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)
    result = env.escrow.open_dispute(escrow_id, 0, b"\x44" * 32, env.client)
    disputed_at = block_timestamp(env, result)
    env.advance(REVIEW + 10)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DISPUTED,
    }
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(
        MilestoneState.DISPUTED, disputed_at
    )
    assert env.escrow.credits(env.provider) == 0


def test_releaseAfterTimeout_refuses_a_settled_milestone(env: EscrowEnv) -> None:
    escrow_id, since = _delivered(env)
    at_next_block(env, since + REVIEW + 1)
    env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.SETTLED,
    }
    assert env.escrow.credits(env.provider) == ETH


def test_releaseAfterTimeout_refuses_a_milestone_out_of_range(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)
    with pytest.raises(rt.EscrowMilestoneOutOfRange) as ei:
        env.escrow.release_after_timeout(escrow_id, 2, env.parties.stranger.address)
    assert ei.value.fields == {"milestone": 2, "count": 2}


def test_releaseAfterTimeout_refuses_a_proposed_escrow(env: EscrowEnv) -> None:
    escrow_id = create(env)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger.address)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.PROPOSED,
        "required": Status.ACTIVE,
    }


def test_releaseAfterTimeout_refuses_params_with_a_shorter_review_period(env: EscrowEnv) -> None:
    p = env.params()
    escrow_id = create_active(env, p)
    ahead(env)
    since = deliver(env, escrow_id, 0)
    at_next_block(env, since + 10)
    shorter = replace(p, terms=replace(p.terms, review_period=1))
    stranger = env.parties.stranger.address
    with pytest.raises(rt.EscrowParamsMismatch) as ei:
        send_fn(env, escrow_fn(env, "releaseAfterTimeout", escrow_id, shorter, 0), stranger)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "expected": python_params_hash(p),
        "actual": python_params_hash(shorter),
    }
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.DELIVERED, since)
    assert env.escrow.credits(env.provider) == 0
