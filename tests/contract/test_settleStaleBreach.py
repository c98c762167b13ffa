"""settleStaleBreach: the 50/50 fallback when the arbiter stays silent (docs/interface.md
section 1)."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import BreachState, EscrowView, Status
from tests.contract.support_breach import (
    ARBITRATION_AFTER,
    RESERVE,
    TOTAL,
    active,
    at,
    challenged,
    check_books,
    only_event,
    quick,
    report,
    settle_all,
    tx_time,
)
from tests.support import ARBITRATION, EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


def test_settleStaleBreach_is_refused_while_the_arbitration_period_runs(env: EscrowEnv) -> None:
    escrow_id = active(env)
    breach_id, challenged_at = challenged(env, escrow_id, kind=3)

    for when in (challenged_at + 1, challenged_at + ARBITRATION):
        at(env, when)
        with pytest.raises(rt.EscrowWindowOpen) as exc:
            env.escrow.settle_stale_breach(escrow_id, breach_id, env.parties.stranger)
        assert exc.value.fields == {"endsAt": challenged_at + ARBITRATION, "timestamp": when}
    assert env.escrow.get_breach(escrow_id, breach_id).state == BreachState.CHALLENGED


def test_settleStaleBreach_gives_the_client_half_and_releases_the_rest_to_locked(
    env: EscrowEnv,
) -> None:
    escrow_id = active(env)
    breach_id, challenged_at = challenged(env, escrow_id, kind=3)
    at(env, challenged_at + ARBITRATION + 1)
    reserve = RESERVE[3]
    assert reserve == 600_001  # odd: the client's half rounds down

    result = env.escrow.settle_stale_breach(escrow_id, breach_id, env.parties.stranger)

    assert tx_time(env, result) == challenged_at + ARBITRATION + 1
    assert only_event(result, "BreachSettled") == {
        "escrowId": escrow_id,
        "breachId": 0,
        "outcome": 4,
        "toClient": 300_000,
        "toProvider": 0,
    }
    assert env.escrow.credits(env.client) == 300_000
    assert env.escrow.credits(env.provider) == 0
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.STALE_SPLIT
    assert env.escrow.get_escrow(escrow_id) == EscrowView(
        status=Status.ACTIVE,
        locked=TOTAL - reserve + 300_001,
        nominal=TOTAL,
        reserved=0,
        refunded=300_000,
        milestone_count=2,
        settled_count=0,
        breach_count=1,
    )
    check_books(env, escrow_id)


def test_settleStaleBreach_credits_the_released_half_to_the_provider_when_nothing_is_unsettled(
    env: EscrowEnv,
) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id, kind=3)
    settle_all(env, escrow_id, rating=5)
    assert env.escrow.get_escrow(escrow_id).status == Status.ACTIVE
    env.advance(ARBITRATION_AFTER)

    result = env.escrow.settle_stale_breach(escrow_id, breach_id, env.parties.stranger)

    assert only_event(result, "BreachSettled") == {
        "escrowId": escrow_id,
        "breachId": 0,
        "outcome": 4,
        "toClient": 300_000,
        "toProvider": 300_001,
    }
    assert env.escrow.credits(env.client) == 300_000
    assert env.escrow.credits(env.provider) == TOTAL - 300_000
    assert env.escrow.get_escrow(escrow_id) == EscrowView(Status.CLOSED, 0, 0, 0, 300_000, 2, 2, 1)
    check_books(env, escrow_id)


def test_settleStaleBreach_refuses_an_unchallenged_report(env: EscrowEnv) -> None:
    escrow_id = active(env)
    report(env, escrow_id, 1, 1)
    env.advance(ARBITRATION_AFTER)

    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.settle_stale_breach(escrow_id, 0, env.parties.stranger)

    assert exc.value.fields == {"escrowId": escrow_id, "breachId": 0, "state": BreachState.REPORTED}


def test_settleStaleBreach_refuses_an_unknown_breach_id(env: EscrowEnv) -> None:
    escrow_id = active(env)

    with pytest.raises(rt.EscrowBreachNotFound) as exc:
        env.escrow.settle_stale_breach(escrow_id, 0, env.parties.stranger)

    assert exc.value.fields == {"escrowId": escrow_id, "breachId": 0}


def test_settleStaleBreach_settles_a_report_only_once(env: EscrowEnv) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id, kind=2)
    env.advance(ARBITRATION_AFTER)
    quick(env, "settleStaleBreach", escrow_id, breach_id, sender=env.client)
    after = env.escrow.get_escrow(escrow_id)
    assert after.refunded == RESERVE[2] // 2

    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.settle_stale_breach(escrow_id, breach_id, env.parties.stranger)
    assert exc.value.fields == {
        "escrowId": escrow_id,
        "breachId": 0,
        "state": BreachState.STALE_SPLIT,
    }
    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.finalize_breach(escrow_id, breach_id, env.parties.stranger)
    assert exc.value.state == BreachState.STALE_SPLIT
    assert env.escrow.get_escrow(escrow_id) == after
    check_books(env, escrow_id)


def test_settleStaleBreach_splits_a_reserve_of_1_wholly_to_the_release(env: EscrowEnv) -> None:
    """A reserve of 1: the client's half rounds down to 0, the provider side gets 1."""
    escrow_id = active(env, (3, 17), breach_refund_bps=500, max_refund_bps=10_000)
    breach_id, _ = challenged(env, escrow_id, kind=1)  # 500 * 20 / 10000 = 1
    assert env.escrow.get_breach(escrow_id, breach_id).reserve == 1
    settle_all(env, escrow_id)
    env.advance(ARBITRATION_AFTER)

    result = env.escrow.settle_stale_breach(escrow_id, breach_id, env.parties.stranger)

    args = result.event("BreachSettled").args
    assert (args["outcome"], args["toClient"], args["toProvider"]) == (4, 0, 1)
    assert env.escrow.get_escrow(escrow_id).status == Status.CLOSED
    check_books(env, escrow_id)
