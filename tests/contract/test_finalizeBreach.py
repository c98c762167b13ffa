"""finalizeBreach: an unchallenged report refunds its reserve (docs/interface.md section 1), and
when the escrow closes around open reports."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import BreachState, EscrowView, Status
from tests.contract.support_breach import (
    CHALLENGE_AFTER,
    EVIDENCE,
    RESERVE,
    TOTAL,
    active,
    at,
    challenged,
    check_books,
    confirm,
    only_event,
    quick,
    report,
    settle_all,
    tx_time,
)
from tests.support import CHALLENGE, EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


def _reported(env: EscrowEnv, kind: int = 3) -> tuple[int, int]:
    escrow_id = active(env)
    return escrow_id, quick(env, "reportBreach", escrow_id, kind, 1, EVIDENCE, sender=env.oracle)


def test_finalizeBreach_is_refused_until_the_challenge_period_has_passed(env: EscrowEnv) -> None:
    escrow_id, reported_at = _reported(env)

    for when in (reported_at + 1, reported_at + CHALLENGE):
        at(env, when)
        with pytest.raises(rt.EscrowWindowOpen) as exc:
            env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger)
        assert exc.value.fields == {"endsAt": reported_at + CHALLENGE, "timestamp": when}
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.REPORTED


def test_finalizeBreach_refunds_the_reserve_to_the_client_after_the_challenge_period(
    env: EscrowEnv,
) -> None:
    escrow_id, reported_at = _reported(env)
    at(env, reported_at + CHALLENGE + 1)

    result = env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger)

    assert tx_time(env, result) == reported_at + CHALLENGE + 1
    assert only_event(result, "BreachSettled") == {
        "escrowId": escrow_id,
        "breachId": 0,
        "outcome": 1,
        "toClient": RESERVE[3],
        "toProvider": 0,
    }
    assert env.escrow.credits(env.client) == RESERVE[3]
    assert env.escrow.credits(env.provider) == 0
    breach = env.escrow.get_breach(escrow_id, 0)
    assert (breach.state, breach.reported_at, breach.challenged_at, breach.reserve) == (
        BreachState.FINALIZED,
        reported_at,
        0,
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


def test_finalizeBreach_refuses_a_challenged_report(env: EscrowEnv) -> None:
    escrow_id = active(env)
    breach_id, _ = challenged(env, escrow_id)
    env.advance(CHALLENGE_AFTER)

    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.finalize_breach(escrow_id, breach_id, env.parties.stranger)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "breachId": 0,
        "state": BreachState.CHALLENGED,
    }


def test_finalizeBreach_refuses_an_unknown_breach_id(env: EscrowEnv) -> None:
    escrow_id, _ = _reported(env)
    env.advance(CHALLENGE_AFTER)

    for breach_id in (1, 2**32):
        with pytest.raises(rt.EscrowBreachNotFound) as exc:
            env.escrow.finalize_breach(escrow_id, breach_id, env.parties.stranger)
        assert exc.value.fields == {"escrowId": escrow_id, "breachId": breach_id}


def test_finalizeBreach_settles_a_report_only_once(env: EscrowEnv) -> None:
    escrow_id, _ = _reported(env)
    env.advance(CHALLENGE_AFTER)
    quick(env, "finalizeBreach", escrow_id, 0, sender=env.client)

    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "breachId": 0,
        "state": BreachState.FINALIZED,
    }
    assert env.escrow.credits(env.client) == RESERVE[3]
    check_books(env, escrow_id)


def test_finalizeBreach_of_a_report_that_reserved_nothing_credits_nothing(env: EscrowEnv) -> None:
    escrow_id = active(env)
    for kind, period in [(3, 1), (3, 2), (2, 2)]:
        quick(env, "reportBreach", escrow_id, kind, period, EVIDENCE, sender=env.oracle)
    env.advance(CHALLENGE_AFTER)

    result = env.escrow.finalize_breach(escrow_id, 2, env.parties.stranger)

    assert only_event(result, "BreachSettled") == {
        "escrowId": escrow_id,
        "breachId": 2,
        "outcome": 1,
        "toClient": 0,
        "toProvider": 0,
    }
    assert env.escrow.get_breach(escrow_id, 2).state == BreachState.FINALIZED
    view = env.escrow.get_escrow(escrow_id)
    assert (view.reserved, view.refunded) == (600_001 + 300_001, 0)
    check_books(env, escrow_id)


def test_finalizeBreach_closes_an_escrow_whose_milestones_all_settled_while_it_was_open(
    env: EscrowEnv,
) -> None:
    escrow_id, _ = _reported(env, kind=1)
    settle_all(env, escrow_id, rating=4)
    # every milestone is settled, but the reserve keeps the escrow Active
    assert env.escrow.get_escrow(escrow_id) == EscrowView(
        Status.ACTIVE, 0, 0, RESERVE[1], 0, 2, 2, 1
    )
    env.advance(CHALLENGE_AFTER)

    result = env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger)

    assert result.event("BreachSettled").args["toClient"] == RESERVE[1]
    assert env.escrow.get_escrow(escrow_id) == EscrowView(
        Status.CLOSED, 0, 0, 0, RESERVE[1], 2, 2, 1
    )
    # after Closed nothing changes: no more reports
    with pytest.raises(rt.EscrowInvalidStatus) as exc:
        report(env, escrow_id, 2, 1)
    assert exc.value.fields == {
        "escrowId": escrow_id,
        "status": Status.CLOSED,
        "required": Status.ACTIVE,
    }
    check_books(env, escrow_id)


def test_finalizeBreach_closes_the_escrow_only_with_the_last_open_reserve(env: EscrowEnv) -> None:
    escrow_id = active(env)
    quick(env, "reportBreach", escrow_id, 1, 1, EVIDENCE, sender=env.oracle)
    quick(env, "reportBreach", escrow_id, 2, 1, EVIDENCE, sender=env.oracle)
    settle_all(env, escrow_id)
    env.advance(CHALLENGE_AFTER)

    env.escrow.finalize_breach(escrow_id, 1, env.parties.stranger)
    assert env.escrow.get_escrow(escrow_id).status == Status.ACTIVE
    assert env.escrow.get_escrow(escrow_id).reserved == RESERVE[1]
    env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger)

    view = env.escrow.get_escrow(escrow_id)
    assert (view.status, view.reserved, view.refunded) == (
        Status.CLOSED,
        0,
        RESERVE[1] + RESERVE[2],
    )
    check_books(env, escrow_id)


def test_finalizeBreach_after_locked_ran_out_pays_the_last_milestone_nothing(
    env: EscrowEnv,
) -> None:
    """The whole remainder is reserved: the last milestone settles at 0/0, the escrow stays
    Active until the report is finalized."""
    escrow_id = active(env, (1_000, 9_000), incident_refund_bps=8_000, max_refund_bps=10_000)
    confirm(env, escrow_id, 1)
    quick(env, "reportBreach", escrow_id, 3, 1, EVIDENCE, sender=env.oracle)  # all 1000 locked

    last = env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    args = last.event("MilestoneSettled").args
    assert (args["toProvider"], args["toClient"]) == (0, 0)
    assert env.escrow.get_escrow(escrow_id) == EscrowView(Status.ACTIVE, 0, 0, 1_000, 0, 2, 2, 1)
    env.advance(CHALLENGE_AFTER)

    env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger)

    assert env.escrow.get_escrow(escrow_id) == EscrowView(Status.CLOSED, 0, 0, 0, 1_000, 2, 2, 1)
    assert env.escrow.credits(env.client) == 1_000
    assert env.escrow.credits(env.provider) == 9_000
    check_books(env, escrow_id)


def test_finalizeBreach_is_refused_for_a_zero_reserve_report_once_the_escrow_closed(
    env: EscrowEnv,
) -> None:
    """A report that reserved 0 does not hold the escrow open ("Closed when no milestone is
    unsettled and nothing is reserved"), so it can no longer be finalized."""
    escrow_id = active(env)
    for kind, period in [(3, 1), (3, 2), (1, 1)]:
        quick(env, "reportBreach", escrow_id, kind, period, EVIDENCE, sender=env.oracle)
    settle_all(env, escrow_id)
    env.advance(CHALLENGE_AFTER)
    quick(env, "finalizeBreach", escrow_id, 0, sender=env.client)
    quick(env, "finalizeBreach", escrow_id, 1, sender=env.client)
    assert env.escrow.get_escrow(escrow_id).status == Status.CLOSED

    with pytest.raises(rt.EscrowInvalidStatus) as exc:
        env.escrow.finalize_breach(escrow_id, 2, env.parties.stranger)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "status": Status.CLOSED,
        "required": Status.ACTIVE,
    }
    assert env.escrow.get_breach(escrow_id, 2).state == BreachState.REPORTED
    check_books(env, escrow_id)
