"""confirm: the client settles a milestone at the payout of its rating (the rest back to the
client), before delivery or inside the review window after it."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import BPS, MilestoneState, MilestoneView, SettledHow, Status
from tests.contract.support_core import (
    COMMENT,
    ZERO32,
    ahead,
    at_next_block,
    block_timestamp,
    create,
    create_active,
    deliver,
    event_names,
    settled_args,
    view,
)
from tests.support import CHALLENGE, ETH, PAYOUTS, REVIEW, EscrowEnv

ODD_TABLE = (3_333, 5_001, 6_667, 9_999, 10_000)
CONFIRMED = SettledHow.CONFIRMED


def _settled(env: EscrowEnv, escrow_id: int, milestone: int, rating: int) -> dict[str, int]:
    """Confirms from the client without a comment; returns the split after checking the rest."""
    result = env.escrow.confirm(escrow_id, milestone, rating, None, env.client)
    assert event_names(result) == ["MilestoneSettled"]
    args = result.event("MilestoneSettled").args
    assert (args["escrowId"], args["milestone"], args["how"], args["rating"]) == (
        escrow_id,
        milestone,
        CONFIRMED,
        rating,
    )
    assert args["commentHash"] == ZERO32
    return {"toProvider": args["toProvider"], "toClient": args["toClient"]}


# ------------------------------------------------------------------------------ success


def test_confirm_settles_an_undelivered_milestone(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((ETH, 2 * ETH)))
    held = env.balance(env.escrow.address)
    result = env.escrow.confirm(escrow_id, 1, 5, COMMENT, env.client)
    assert event_names(result) == ["MilestoneSettled"]
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 1, CONFIRMED, 5, COMMENT, 2 * ETH, 0
    )
    assert env.escrow.get_milestone(escrow_id, 1) == MilestoneView(
        MilestoneState.SETTLED, block_timestamp(env, result)
    )
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, ETH, ETH, 2, 1)
    assert env.escrow.credits(env.provider) == 2 * ETH
    assert env.escrow.credits(env.client) == 0
    assert env.balance(env.escrow.address) == held  # credits only; nothing leaves


@pytest.mark.parametrize("rating", [1, 2, 3, 4, 5])
def test_confirm_pays_the_rating_share_to_the_provider_and_the_rest_to_the_client(
    env: EscrowEnv, rating: int
) -> None:
    amount = 999_999_999
    escrow_id = create_active(env, env.params((amount, 5)))
    result = env.escrow.confirm(escrow_id, 0, rating, COMMENT, env.client)
    to_provider = amount * PAYOUTS[rating - 1] // BPS
    to_client = amount - to_provider
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, CONFIRMED, rating, COMMENT, to_provider, to_client
    )
    assert (to_provider, to_client) == {
        1: (199_999_999, 800_000_000),
        2: (399_999_999, 600_000_000),
        3: (599_999_999, 400_000_000),
        4: (799_999_999, 200_000_000),
        5: (999_999_999, 0),
    }[rating]
    assert env.escrow.credits(env.provider) == to_provider
    assert env.escrow.credits(env.client) == to_client
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, 5, 5, 2, 1)


def test_confirm_pays_in_the_escrow_token(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((1_000_000, 3), token=env.token))
    env.escrow.confirm(escrow_id, 0, 2, None, env.client)
    assert env.escrow.credits(env.provider, env.token) == 400_000
    assert env.escrow.credits(env.client, env.token) == 600_000
    assert env.escrow.credits(env.provider) == 0
    assert env.escrow.credits(env.client) == 0


def test_confirm_is_allowed_at_exactly_the_end_of_the_review_window(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    ahead(env)
    since = deliver(env, escrow_id, 0)
    at_next_block(env, since + REVIEW)
    result = env.escrow.confirm(escrow_id, 0, 4, COMMENT, env.client)
    assert block_timestamp(env, result) == since + REVIEW
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, CONFIRMED, 4, COMMENT, ETH * 8_000 // BPS, ETH * 2_000 // BPS
    )
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(
        MilestoneState.SETTLED, since + REVIEW
    )


def test_confirm_is_allowed_right_after_delivery(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    deliver(env, escrow_id, 1)
    result = env.escrow.confirm(escrow_id, 1, 1, None, env.client)
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 1, CONFIRMED, 1, ZERO32, 2 * ETH * 2_000 // BPS, 2 * ETH * 8_000 // BPS
    )


def test_confirm_of_the_last_milestone_takes_all_locked_and_closes(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((ETH, 2 * ETH)))
    env.escrow.confirm(escrow_id, 0, 3, None, env.client)
    result = env.escrow.confirm(escrow_id, 1, 5, COMMENT, env.client)
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 1, CONFIRMED, 5, COMMENT, 2 * ETH, 0
    )
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2, 2)
    assert env.escrow.credits(env.provider) == ETH * 6_000 // BPS + 2 * ETH
    assert env.escrow.credits(env.client) == ETH * 4_000 // BPS


def test_confirm_shares_what_a_breach_reserve_left_and_stays_open_while_reserved(
    env: EscrowEnv,
) -> None:
    escrow_id = create_active(env, env.params((1_000, 2_001)))
    _, report = env.escrow.report_breach(escrow_id, 3, 1, b"\x55" * 32, env.oracle)
    assert report.event("BreachReported").args["reserved"] == 600  # 2000 bps of 3001
    assert env.escrow.get_escrow(escrow_id) == view(
        Status.ACTIVE, 2_401, 3_001, 2, reserved=600, breach_count=1
    )

    first = _settled(env, escrow_id, 0, 4)
    # base = 1000 * 2401 // 3001 = 800, of which 80% to the provider
    assert first == {"toProvider": 640, "toClient": 160}
    assert env.escrow.get_escrow(escrow_id) == view(
        Status.ACTIVE, 1_601, 2_001, 2, 1, reserved=600, breach_count=1
    )

    last = _settled(env, escrow_id, 1, 2)
    # the last milestone takes all of locked: 1601, of which 40% (rounded down) to the provider
    assert last == {"toProvider": 640, "toClient": 961}
    assert env.escrow.get_escrow(escrow_id) == view(
        Status.ACTIVE, 0, 0, 2, 2, reserved=600, breach_count=1
    )
    assert env.escrow.credits(env.provider) == 1_280
    assert env.escrow.credits(env.client) == 1_121  # 3001 - 600 reserved - 1280

    env.advance(CHALLENGE + 1)
    env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger.address)
    assert env.escrow.get_escrow(escrow_id) == view(
        Status.CLOSED, 0, 0, 2, 2, refunded=600, breach_count=1
    )
    assert env.escrow.credits(env.client) == 1_721


def test_confirm_rounds_odd_bps_down_for_the_provider_without_losing_a_wei(
    env: EscrowEnv,
) -> None:
    terms = env.terms(rating_payout_bps=ODD_TABLE)
    escrow_id = create_active(env, env.params((7, 3), terms=terms))
    assert _settled(env, escrow_id, 0, 2) == {"toProvider": 3, "toClient": 4}  # 7 * 50.01%
    assert _settled(env, escrow_id, 1, 3) == {"toProvider": 2, "toClient": 1}  # 3 * 66.67%
    assert env.escrow.credits(env.provider) + env.escrow.credits(env.client) == 10
    assert env.escrow.credits(env.provider) == 5
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 2, 2)


def test_confirm_of_one_wei_milestones_gives_each_wei_to_one_side(env: EscrowEnv) -> None:
    terms = env.terms(rating_payout_bps=ODD_TABLE)
    escrow_id = create_active(env, env.params((1, 1, 1), terms=terms))
    splits = [_settled(env, escrow_id, m, r) for m, r in [(0, 1), (1, 5), (2, 4)]]
    assert splits == [
        {"toProvider": 0, "toClient": 1},  # 33.33% of 1 wei rounds to 0
        {"toProvider": 1, "toClient": 0},
        {"toProvider": 0, "toClient": 1},  # 99.99% of 1 wei rounds to 0
    ]
    assert sum(s["toProvider"] + s["toClient"] for s in splits) == 3
    assert env.escrow.credits(env.provider) == 1
    assert env.escrow.credits(env.client) == 2
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 3, 3)


def test_confirm_in_any_order_distributes_exactly_the_total(env: EscrowEnv) -> None:
    terms = env.terms(rating_payout_bps=ODD_TABLE)
    amounts = (13, 1, 7, 999, 2)
    escrow_id = create_active(env, env.params(amounts, terms=terms))
    total_paid = 0
    for m, rating in [(3, 2), (0, 1), (4, 4), (1, 3), (2, 2)]:
        split = _settled(env, escrow_id, m, rating)
        assert split["toProvider"] == amounts[m] * ODD_TABLE[rating - 1] // BPS
        assert split["toProvider"] + split["toClient"] == amounts[m]
        total_paid += amounts[m]
    assert total_paid == sum(amounts)
    assert env.escrow.credits(env.provider) + env.escrow.credits(env.client) == 1_022
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 5, 5)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("who", ["provider", "stranger", "relayer", "arbiter"])
def test_confirm_refuses_a_caller_other_than_the_client(env: EscrowEnv, who: str) -> None:
    escrow_id = create_active(env)
    caller = getattr(env.parties, who).address
    with pytest.raises(rt.EscrowUnauthorizedCaller) as ei:
        env.escrow.confirm(escrow_id, 0, 5, None, caller)
    assert ei.value.fields == {"caller": caller, "required": env.client}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.credits(env.provider) == 0


def test_confirm_refuses_a_proposed_escrow(env: EscrowEnv) -> None:
    escrow_id = create(env)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.PROPOSED,
        "required": Status.ACTIVE,
    }


def test_confirm_refuses_one_second_after_the_review_window(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    ahead(env)
    since = deliver(env, escrow_id, 0)
    at_next_block(env, since + REVIEW + 1)
    with pytest.raises(rt.EscrowWindowClosed) as ei:
        env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    assert ei.value.fields == {"endedAt": since + REVIEW, "timestamp": since + REVIEW + 1}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.DELIVERED, since)
    assert env.escrow.credits(env.provider) == 0


@pytest.mark.parametrize("rating", [0, 6, 255])
def test_confirm_refuses_a_rating_outside_1_to_5(env: EscrowEnv, rating: int) -> None:
    escrow_id = create_active(env)
    with pytest.raises(rt.EscrowInvalidRating) as ei:
        env.escrow.confirm(escrow_id, 0, rating, None, env.client)
    assert ei.value.fields == {"rating": rating}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)


def test_confirm_refuses_a_second_confirmation(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    result = env.escrow.confirm(escrow_id, 0, 2, None, env.client)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.SETTLED,
    }
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(
        MilestoneState.SETTLED, block_timestamp(env, result)
    )
    assert env.escrow.credits(env.provider) == ETH * 4_000 // BPS


def test_confirm_refuses_a_disputed_milestone(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    deliver(env, escrow_id, 0)
    env.escrow.open_dispute(escrow_id, 0, b"\x44" * 32, env.client)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DISPUTED,
    }
    assert env.escrow.credits(env.provider) == 0


@pytest.mark.parametrize("milestone", [2, 2**256 - 1])
def test_confirm_refuses_a_milestone_out_of_range(env: EscrowEnv, milestone: int) -> None:
    escrow_id = create_active(env)
    with pytest.raises(rt.EscrowMilestoneOutOfRange) as ei:
        env.escrow.confirm(escrow_id, milestone, 5, None, env.client)
    assert ei.value.fields == {"milestone": milestone, "count": 2}
