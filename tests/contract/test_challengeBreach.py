"""challengeBreach: the provider sends a report to the arbiter (docs/interface.md section 1)."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import ZERO_ADDRESS, BreachState, BreachView
from tests.contract.support_breach import (
    CHALLENGE_AFTER,
    EVIDENCE,
    RESERVE,
    TOTAL,
    active,
    at,
    check_books,
    only_event,
    quick,
    quick_active,
    report,
    tx_time,
)
from tests.support import CHALLENGE, EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


def _reported(env: EscrowEnv, kind: int = 2) -> tuple[int, int]:
    """An active escrow with one open report; returns (escrowId, reportedAt)."""
    escrow_id = active(env)
    return escrow_id, quick(env, "reportBreach", escrow_id, kind, 3, EVIDENCE, sender=env.oracle)


def test_challengeBreach_sends_the_report_to_the_arbiter(env: EscrowEnv) -> None:
    escrow_id, reported_at = _reported(env)
    before = env.escrow.get_escrow(escrow_id)

    result = env.escrow.challenge_breach(escrow_id, 0, env.provider)

    assert only_event(result, "BreachChallenged") == {"escrowId": escrow_id, "breachId": 0}
    assert env.escrow.get_breach(escrow_id, 0) == BreachView(
        state=BreachState.CHALLENGED,
        kind=2,
        period=3,
        reported_at=reported_at,
        challenged_at=tx_time(env, result),
        reserve=RESERVE[2],
    )
    # the reserve stays held: nothing moves until the arbiter (or the fallback) decides
    assert env.escrow.get_escrow(escrow_id) == before
    assert before.reserved == RESERVE[2]
    assert before.locked == TOTAL - RESERVE[2]
    check_books(env, escrow_id)


def test_challengeBreach_is_allowed_at_the_last_second_of_the_challenge_period(
    env: EscrowEnv,
) -> None:
    escrow_id, reported_at = _reported(env)
    at(env, reported_at + CHALLENGE)

    result = env.escrow.challenge_breach(escrow_id, 0, env.provider)

    assert tx_time(env, result) == reported_at + CHALLENGE
    breach = env.escrow.get_breach(escrow_id, 0)
    assert (breach.state, breach.challenged_at) == (BreachState.CHALLENGED, reported_at + CHALLENGE)


def test_challengeBreach_is_refused_one_second_after_the_challenge_period(env: EscrowEnv) -> None:
    escrow_id, reported_at = _reported(env)
    at(env, reported_at + CHALLENGE + 1)

    with pytest.raises(rt.EscrowWindowClosed) as exc:
        env.escrow.challenge_breach(escrow_id, 0, env.provider)

    assert exc.value.fields == {
        "endedAt": reported_at + CHALLENGE,
        "timestamp": reported_at + CHALLENGE + 1,
    }
    breach = env.escrow.get_breach(escrow_id, 0)
    assert (breach.state, breach.challenged_at) == (BreachState.REPORTED, 0)


def test_challengeBreach_is_refused_to_anyone_but_the_provider(env: EscrowEnv) -> None:
    escrow_id, _ = _reported(env)

    for who in ("client", "oracle", "arbiter", "stranger"):
        caller = getattr(env.parties, who).address
        with pytest.raises(rt.EscrowUnauthorizedCaller) as exc:
            env.escrow.challenge_breach(escrow_id, 0, caller)
        assert exc.value.fields == {"caller": caller, "required": env.provider}
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.REPORTED


def test_challengeBreach_needs_an_arbiter(env: EscrowEnv) -> None:
    params = env.params(arbiter=ZERO_ADDRESS, terms=env.terms(arbitration_period=0))
    escrow_id = quick_active(env, params)
    report(env, escrow_id, 1, 1)

    with pytest.raises(rt.EscrowNoArbiter) as exc:
        env.escrow.challenge_breach(escrow_id, 0, env.provider)

    assert exc.value.fields == {"escrowId": escrow_id}
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.REPORTED
    # without an arbiter the report simply finalizes after the challenge period
    env.advance(CHALLENGE_AFTER)
    env.escrow.finalize_breach(escrow_id, 0, env.parties.stranger)
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.FINALIZED
    check_books(env, escrow_id)


def test_challengeBreach_refuses_an_unknown_breach_id(env: EscrowEnv) -> None:
    escrow_id, _ = _reported(env)
    other = active(env)

    for target, breach_id in ((escrow_id, 1), (escrow_id, 2**256 - 1), (other, 0)):
        with pytest.raises(rt.EscrowBreachNotFound) as exc:
            env.escrow.challenge_breach(target, breach_id, env.provider)
        assert exc.value.fields == {"escrowId": target, "breachId": breach_id}


def test_challengeBreach_refuses_a_report_already_challenged(env: EscrowEnv) -> None:
    escrow_id, _ = _reported(env)
    first = env.escrow.challenge_breach(escrow_id, 0, env.provider)

    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.challenge_breach(escrow_id, 0, env.provider)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "breachId": 0,
        "state": BreachState.CHALLENGED,
    }
    assert env.escrow.get_breach(escrow_id, 0).challenged_at == tx_time(env, first)


def test_challengeBreach_refuses_a_finalized_report(env: EscrowEnv) -> None:
    escrow_id, _ = _reported(env)
    env.advance(CHALLENGE_AFTER)
    quick(env, "finalizeBreach", escrow_id, 0, sender=env.client)

    with pytest.raises(rt.EscrowInvalidBreachState) as exc:
        env.escrow.challenge_breach(escrow_id, 0, env.provider)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "breachId": 0,
        "state": BreachState.FINALIZED,
    }


def test_challengeBreach_accepts_a_report_that_reserved_nothing(env: EscrowEnv) -> None:
    escrow_id = active(env)
    for kind, period in [(3, 1), (3, 2), (1, 1)]:
        quick(env, "reportBreach", escrow_id, kind, period, EVIDENCE, sender=env.oracle)
    assert env.escrow.get_breach(escrow_id, 2).reserve == 0

    result = env.escrow.challenge_breach(escrow_id, 2, env.provider)

    assert only_event(result, "BreachChallenged") == {"escrowId": escrow_id, "breachId": 2}
    assert env.escrow.get_breach(escrow_id, 2).state == BreachState.CHALLENGED
    check_books(env, escrow_id)
