"""resolveBreach: the arbiter upholds or rejects a challenged report (docs/interface.md
section 1)."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import BreachState, EscrowView, Status
from tests.contract.support_breach import (
    AMOUNTS,
    EVIDENCE,
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
from tests.support import ARBITRATION, CHALLENGE, EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


def test_resolveBreach_upheld_credits_the_reserve_to_the_client(env: EscrowEnv) -> None:
    escrow_id = active(env)
    breach_id, challenged_at = challenged(env, escrow_id, kind=3)

    result = env.escrow.resolve_breach(escrow_id, breach_id, True, env.arbiter)

    assert only_event(result, "BreachSettled") == {
        "escrowId": escrow_id,
        "breachId": 0,
        "outcome": 2,
        "toClient": RESERVE[3],
        "toProvider": 0,
    }
    assert env.escrow.credits(env.client) == RESERVE[3]
    assert env.escrow.credits(env.provider) == 0
    breach = env.escrow.get_breach(escrow_id, 0)
    assert (breach.state, breach.challenged_at, breach.reserve) == (
        BreachState.UPHELD,
        challenged_at,
        RESERVE[3],
    )
    assert env.escrow.get_escrow(escrow_id) == EscrowView(
        status=Status.ACTIVE,
        locked=TOTAL - RESERVE[3],
        nominal=TOTAL,
        reserved=0,
        refunded=RESERVE[3],
        milestone_count=2,
        settled_count=0,
        breach_count=1,
    )
    check_books(env, escrow_id)


def test_resolveBreach_rejected_returns_the_reserve_to_locked_while_a_milestone_is_unsettled(
    env: EscrowEnv,
) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id, kind=3)

    result = env.escrow.resolve_breach(escrow_id, breach_id, False, env.arbiter)

    assert only_event(result, "BreachSettled") == {
        "escrowId": escrow_id,
        "breachId": 0,
        "outcome": 3,
        "toClient": 0,
        "toProvider": 0,
    }
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.REJECTED
    assert env.escrow.get_escrow(escrow_id) == EscrowView(
        Status.ACTIVE, TOTAL, TOTAL, 0, 0, 2, 0, 1
    )
    assert env.escrow.credits(env.client) == env.escrow.credits(env.provider) == 0
    # the returned reserve funds the milestones again: milestone 0 pays in full
    settled = env.escrow.confirm(escrow_id, 0, 5, None, env.client)  # pays in full
    assert settled.event("MilestoneSettled").args["toProvider"] == AMOUNTS[0]
    check_books(env, escrow_id)


def test_resolveBreach_rejected_returns_the_reserve_to_the_milestones_left(env: EscrowEnv) -> None:
    """Milestone 0 settles while the reserve is held; the rejected reserve then goes wholly to
    the last milestone's base."""
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id, kind=3)
    first = env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    base0 = AMOUNTS[0] * (TOTAL - RESERVE[3]) // TOTAL
    assert first.event("MilestoneSettled").args["toProvider"] == base0

    quick(env, "resolveBreach", escrow_id, breach_id, False, sender=env.arbiter)
    assert env.escrow.get_escrow(escrow_id).locked == TOTAL - base0

    last = env.escrow.confirm(escrow_id, 1, 5, None, env.client)
    assert last.event("MilestoneSettled").args["toProvider"] == TOTAL - base0
    assert env.escrow.credits(env.provider) == TOTAL
    assert env.escrow.get_escrow(escrow_id).status == Status.CLOSED
    check_books(env, escrow_id)


def test_resolveBreach_rejected_credits_the_provider_when_no_milestone_is_unsettled(
    env: EscrowEnv,
) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id, kind=2)
    settle_all(env, escrow_id)
    assert env.escrow.get_escrow(escrow_id).status == Status.ACTIVE  # the reserve holds it open
    paid_before = env.escrow.credits(env.provider)
    assert paid_before == TOTAL - RESERVE[2]

    result = env.escrow.resolve_breach(escrow_id, breach_id, False, env.arbiter)

    assert only_event(result, "BreachSettled") == {
        "escrowId": escrow_id,
        "breachId": 0,
        "outcome": 3,
        "toClient": 0,
        "toProvider": RESERVE[2],
    }
    assert env.escrow.credits(env.provider) == TOTAL
    assert env.escrow.credits(env.client) == 0
    assert env.escrow.get_escrow(escrow_id) == EscrowView(Status.CLOSED, 0, 0, 0, 0, 2, 2, 1)
    check_books(env, escrow_id)


def test_resolveBreach_upheld_after_the_last_milestone_closes_the_escrow(env: EscrowEnv) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id, kind=1)
    settle_all(env, escrow_id, rating=3)

    result = env.escrow.resolve_breach(escrow_id, breach_id, True, env.arbiter)

    args = result.event("BreachSettled").args
    assert (args["outcome"], args["toClient"], args["toProvider"]) == (2, RESERVE[1], 0)
    view = env.escrow.get_escrow(escrow_id)
    assert (view.status, view.reserved, view.refunded) == (Status.CLOSED, 0, RESERVE[1])
    check_books(env, escrow_id)


def test_resolveBreach_is_refused_to_anyone_but_the_arbiter(env: EscrowEnv) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id)

    for who in ("client", "provider", "oracle", "stranger"):
        caller = getattr(env.parties, who).address
        with pytest.raises(rt.EscrowUnauthorizedCaller) as exc:
            env.escrow.resolve_breach(escrow_id, breach_id, True, caller)
        assert exc.value.fields == {"caller": caller, "required": env.arbiter}
    assert env.escrow.get_breach(escrow_id, breach_id).state == BreachState.CHALLENGED


def test_resolveBreach_is_allowed_until_the_arbitration_period_after_the_challenge_ends(
    env: EscrowEnv,
) -> None:
    escrow_id = active(env)
    reported_at = quick(env, "reportBreach", escrow_id, 1, 1, EVIDENCE, sender=env.oracle)
    at(env, reported_at + CHALLENGE)  # a late challenge starts the arbitration period late
    challenged_at = quick(env, "challengeBreach", escrow_id, 0, sender=env.provider)
    assert challenged_at == reported_at + CHALLENGE
    at(env, challenged_at + ARBITRATION)

    result = env.escrow.resolve_breach(escrow_id, 0, True, env.arbiter)

    assert tx_time(env, result) == challenged_at + ARBITRATION
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.UPHELD
    check_books(env, escrow_id)


def test_resolveBreach_is_refused_after_the_arbitration_period(env: EscrowEnv) -> None:
    escrow_id = active(env)
    breach_id, challenged_at = challenged(env, escrow_id)
    at(env, challenged_at + ARBITRATION + 1)

    for upheld in (True, False):
        with pytest.raises(rt.EscrowWindowClosed) as exc:
            env.escrow.resolve_breach(escrow_id, breach_id, upheld, env.arbiter)
        assert exc.value.fields == {
            "endedAt": challenged_at + ARBITRATION,
            "timestamp": challenged_at + ARBITRATION + 1,
        }
    assert env.escrow.get_breach(escrow_id, breach_id).state == BreachState.CHALLENGED


def test_resolveBreach_refuses_an_unchallenged_report(env: EscrowEnv) -> None:
    escrow_id = active(env)
    report(env, escrow_id, 1, 1)

    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.resolve_breach(escrow_id, 0, True, env.arbiter)

    assert exc.value.fields == {"escrowId": escrow_id, "breachId": 0, "state": BreachState.REPORTED}


def test_resolveBreach_refuses_an_unknown_breach_id(env: EscrowEnv) -> None:
    escrow_id = active(env)
    challenged(env, escrow_id)

    with pytest.raises(rt.EscrowBreachNotFound) as exc:
        env.escrow.resolve_breach(escrow_id, 1, True, env.arbiter)

    assert exc.value.fields == {"escrowId": escrow_id, "breachId": 1}


@pytest.mark.parametrize(
    ("upheld", "state"), [(True, BreachState.UPHELD), (False, BreachState.REJECTED)]
)
def test_resolveBreach_settles_a_report_only_once(
    env: EscrowEnv, upheld: bool, state: BreachState
) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id)
    quick(env, "resolveBreach", escrow_id, breach_id, upheld, sender=env.arbiter)
    after = env.escrow.get_escrow(escrow_id)

    for again in (True, False):
        with pytest.raises(rt.EscrowInvalidBreachState) as exc:
            env.escrow.resolve_breach(escrow_id, breach_id, again, env.arbiter)
        assert exc.value.fields == {"escrowId": escrow_id, "breachId": 0, "state": state}
    env.advance(ARBITRATION + 10)
    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.settle_stale_breach(escrow_id, breach_id, env.parties.stranger)
    assert exc.value.state == state
    assert env.escrow.get_escrow(escrow_id) == after
    check_books(env, escrow_id)
