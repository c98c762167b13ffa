"""reportBreach: the oracle's evidence and the reserve it takes (docs/interface.md section 1)."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import BreachState, BreachView, EscrowView, Status
from tests.contract.support_breach import (
    AMOUNTS,
    CAP,
    CHALLENGE_AFTER,
    EVIDENCE,
    RESERVE,
    TOTAL,
    active,
    challenged,
    check_books,
    confirm,
    only_event,
    quick,
    quick_create,
    report,
    settle_all,
    tx_time,
)
from tests.support import EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


U32_MAX = 2**32 - 1


@pytest.mark.parametrize("kind", [1, 2, 3])
def test_reportBreach_reserves_the_kinds_refund_out_of_locked(env: EscrowEnv, kind: int) -> None:
    escrow_id = active(env)
    evidence = bytes([kind]) * 32

    breach_id, result = env.escrow.report_breach(escrow_id, kind, 42, evidence, env.oracle)

    assert breach_id == 0
    assert only_event(result, "BreachReported") == {
        "escrowId": escrow_id,
        "breachId": 0,
        "kind": kind,
        "period": 42,
        "evidenceHash": evidence,
        "reserved": RESERVE[kind],
    }
    assert RESERVE[kind] == {1: 150_000, 2: 300_000, 3: 600_001}[kind]  # rounded down
    assert env.escrow.get_breach(escrow_id, 0) == BreachView(
        state=BreachState.REPORTED,
        kind=kind,
        period=42,
        reported_at=tx_time(env, result),
        challenged_at=0,
        reserve=RESERVE[kind],
    )
    assert env.escrow.get_escrow(escrow_id) == EscrowView(
        status=Status.ACTIVE,
        locked=TOTAL - RESERVE[kind],
        nominal=TOTAL,
        reserved=RESERVE[kind],
        refunded=0,
        milestone_count=2,
        settled_count=0,
        breach_count=1,
    )
    assert env.escrow.credits(env.client) == 0
    check_books(env, escrow_id)


def test_reportBreach_counts_breach_ids_up_from_0(env: EscrowEnv) -> None:
    escrow_id = active(env)
    report_fn = env.escrow.contract.functions.reportBreach
    p = env.escrow.params(escrow_id).to_abi()

    for expected, (kind, period) in enumerate([(1, 1), (2, 1), (1, 2), (3, 0)]):
        returned = report_fn(escrow_id, p, kind, period, EVIDENCE).call({"from": env.oracle})
        breach_id, result = report(env, escrow_id, kind, period)
        assert returned == breach_id == expected
        assert result.event("BreachReported").args["breachId"] == expected
        assert env.escrow.get_escrow(escrow_id).breach_count == expected + 1
        assert env.escrow.get_breach(escrow_id, expected).kind == kind
        assert env.escrow.get_breach(escrow_id, expected).period == period

    other = active(env)
    breach_id, _ = report(env, other, 1, 1)
    assert breach_id == 0  # per escrow
    check_books(env, escrow_id, ledger=False)


def test_reportBreach_is_refused_to_anyone_but_the_oracle(env: EscrowEnv) -> None:
    escrow_id = active(env)

    for who in ("client", "provider", "arbiter", "stranger"):
        caller = getattr(env.parties, who).address
        with pytest.raises(rt.EscrowUnauthorizedCaller) as exc:
            env.escrow.report_breach(escrow_id, 1, 1, EVIDENCE, caller)
        assert exc.value.fields == {"caller": caller, "required": env.oracle}
    assert env.escrow.get_escrow(escrow_id).breach_count == 0


def test_reportBreach_is_refused_while_the_escrow_is_proposed(env: EscrowEnv) -> None:
    escrow_id = quick_create(env, env.params(AMOUNTS))

    with pytest.raises(rt.EscrowInvalidStatus) as exc:
        report(env, escrow_id, 1, 1)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "status": Status.PROPOSED,
        "required": Status.ACTIVE,
    }
    assert env.escrow.get_escrow(escrow_id).locked == TOTAL


def test_reportBreach_is_refused_once_the_escrow_is_closed(env: EscrowEnv) -> None:
    cancelled = quick_create(env, env.params(AMOUNTS))
    quick(env, "cancel", cancelled, sender=env.client)
    completed = active(env)
    settle_all(env, completed)
    assert env.escrow.get_escrow(completed).status == Status.CLOSED

    for escrow_id in (cancelled, completed):
        with pytest.raises(rt.EscrowInvalidStatus) as exc:
            report(env, escrow_id, 1, 1)
        assert exc.value.fields == {
            "escrowId": escrow_id,
            "status": Status.CLOSED,
            "required": Status.ACTIVE,
        }
        assert env.escrow.get_escrow(escrow_id).breach_count == 0


def test_reportBreach_refuses_kinds_outside_1_to_3(env: EscrowEnv) -> None:
    escrow_id = active(env)

    for kind in (0, 4, 255):
        with pytest.raises(rt.EscrowInvalidBreachKind) as exc:
            report(env, escrow_id, kind, 1)
        assert exc.value.fields == {"kind": kind}
    assert env.escrow.get_escrow(escrow_id).breach_count == 0
    assert env.escrow.get_escrow(escrow_id).reserved == 0


@pytest.mark.parametrize("period", [0, 63, 64, U32_MAX])
def test_reportBreach_refuses_the_same_kind_and_period_twice(env: EscrowEnv, period: int) -> None:
    escrow_id = active(env)
    report(env, escrow_id, 2, period)
    before = env.escrow.get_escrow(escrow_id)

    with pytest.raises(rt.EscrowBreachAlreadyReported) as exc:
        report(env, escrow_id, 2, period, bytes.fromhex("ff" * 32))

    assert exc.value.fields == {"escrowId": escrow_id, "kind": 2, "period": period}
    assert env.escrow.get_escrow(escrow_id) == before
    assert env.escrow.get_breach(escrow_id, 1).state == BreachState.NONE


def test_reportBreach_refuses_a_repeat_even_after_the_first_report_settled(env: EscrowEnv) -> None:
    escrow_id = active(env)
    report(env, escrow_id, 1, 5)
    env.advance(CHALLENGE_AFTER)
    quick(env, "finalizeBreach", escrow_id, 0, sender=env.client)

    with pytest.raises(rt.EscrowBreachAlreadyReported) as exc:
        report(env, escrow_id, 1, 5)

    assert exc.value.fields == {"escrowId": escrow_id, "kind": 1, "period": 5}


def test_reportBreach_accepts_the_same_period_with_another_kind(env: EscrowEnv) -> None:
    escrow_id = active(env)

    for breach_id, kind in enumerate((1, 2, 3)):
        assert report(env, escrow_id, kind, 7)[0] == breach_id

    breaches = [env.escrow.get_breach(escrow_id, b) for b in range(3)]
    assert [(b.kind, b.period, b.state) for b in breaches] == [
        (1, 7, BreachState.REPORTED),
        (2, 7, BreachState.REPORTED),
        (3, 7, BreachState.REPORTED),
    ]
    # 150000 + 300000 + min(600001, 900002 - 450000)
    assert [b.reserve for b in breaches] == [150_000, 300_000, 450_002]
    assert env.escrow.get_escrow(escrow_id).reserved == CAP
    check_books(env, escrow_id)


def test_reportBreach_accepts_the_same_kind_for_other_periods(env: EscrowEnv) -> None:
    """Periods 63 and 64 straddle a word of the reported-bits map; 2^32-1 is the largest; the
    others would share a bit under a narrower map."""
    escrow_id = active(env, max_refund_bps=10_000)
    periods = [63, 64, 0, 1, 31, 32, 33, 62, 65, 127, 128, 2**31, U32_MAX - 1, U32_MAX]

    for breach_id, period in enumerate(periods):
        _, result = report(env, escrow_id, 1, period)
        assert result.event("BreachReported").args["breachId"] == breach_id
        assert result.event("BreachReported").args["period"] == period
        assert result.event("BreachReported").args["reserved"] == RESERVE[1]

    assert [env.escrow.get_breach(escrow_id, b).period for b in range(len(periods))] == periods
    for kind, period in [(1, 63), (1, 64), (1, U32_MAX)]:
        with pytest.raises(rt.EscrowBreachAlreadyReported):
            report(env, escrow_id, kind, period)
    # the other kinds' bits for the same periods are still free
    assert report(env, escrow_id, 2, 64)[0] == len(periods)
    assert report(env, escrow_id, 3, 63)[0] == len(periods) + 1
    check_books(env, escrow_id)


def test_reportBreach_accepts_a_kind_and_period_already_reported_on_another_escrow(
    env: EscrowEnv,
) -> None:
    first = active(env)
    second = active(env)
    report(env, first, 3, 9)

    breach_id, result = report(env, second, 3, 9)

    assert breach_id == 0
    assert result.event("BreachReported").args["reserved"] == RESERVE[3]
    assert env.escrow.get_escrow(first).reserved == env.escrow.get_escrow(second).reserved


def test_reportBreach_caps_the_reserves_at_maxRefundBps_of_the_total(env: EscrowEnv) -> None:
    escrow_id = active(env)

    reserved = []
    for kind, period in [(3, 1), (3, 2), (1, 1), (2, 1)]:
        _, result = report(env, escrow_id, kind, period)
        reserved.append(result.event("BreachReported").args["reserved"])

    # 600001, then the 300001 left of the 900002 cap, then nothing, but still recorded
    assert reserved == [600_001, 300_001, 0, 0]
    view = env.escrow.get_escrow(escrow_id)
    assert (view.breach_count, view.reserved, view.locked) == (4, CAP, TOTAL - CAP)
    empty = env.escrow.get_breach(escrow_id, 3)
    assert (empty.state, empty.kind, empty.period, empty.reserve) == (BreachState.REPORTED, 2, 1, 0)
    check_books(env, escrow_id)


def test_reportBreach_counts_refunds_against_the_cap(env: EscrowEnv) -> None:
    escrow_id = active(env)
    report(env, escrow_id, 3, 1)
    env.advance(CHALLENGE_AFTER)
    quick(env, "finalizeBreach", escrow_id, 0, sender=env.client)
    assert env.escrow.get_escrow(escrow_id).refunded == RESERVE[3]

    _, second = report(env, escrow_id, 3, 2)
    _, third = report(env, escrow_id, 1, 2)

    assert second.event("BreachReported").args["reserved"] == CAP - RESERVE[3]
    assert third.event("BreachReported").args["reserved"] == 0
    view = env.escrow.get_escrow(escrow_id)
    assert (view.refunded, view.reserved, view.breach_count) == (600_001, 300_001, 3)
    assert view.locked == TOTAL - CAP
    check_books(env, escrow_id)


def test_reportBreach_frees_the_cap_of_a_rejected_reserve(env: EscrowEnv) -> None:
    escrow_id = active(env)
    challenged(env, escrow_id, 3, 1)
    quick(env, "resolveBreach", escrow_id, 0, False, sender=env.arbiter)

    _, result = report(env, escrow_id, 3, 2)

    assert result.event("BreachReported").args["reserved"] == RESERVE[3]
    view = env.escrow.get_escrow(escrow_id)
    assert (view.reserved, view.refunded, view.locked) == (600_001, 0, TOTAL - 600_001)
    check_books(env, escrow_id)


def test_reportBreach_reserves_no_more_than_locked_and_0_when_nothing_is_locked(
    env: EscrowEnv,
) -> None:
    escrow_id = active(env, (1_000, 9_000), incident_refund_bps=8_000, max_refund_bps=10_000)
    confirm(env, escrow_id, 1)
    assert env.escrow.get_escrow(escrow_id).locked == 1_000

    _, capped = report(env, escrow_id, 3, 1)  # min(8000, 10000, locked 1000)
    _, empty = report(env, escrow_id, 1, 1)  # locked is 0

    assert capped.event("BreachReported").args["reserved"] == 1_000
    assert only_event(empty, "BreachReported") == {
        "escrowId": escrow_id,
        "breachId": 1,
        "kind": 1,
        "period": 1,
        "evidenceHash": EVIDENCE,
        "reserved": 0,
    }
    view = env.escrow.get_escrow(escrow_id)
    assert view == EscrowView(Status.ACTIVE, 0, 1_000, 1_000, 0, 2, 1, 2)
    assert env.escrow.get_breach(escrow_id, 1).reserve == 0
    check_books(env, escrow_id)


def test_reportBreach_makes_later_settlements_pro_rata_to_what_is_left(env: EscrowEnv) -> None:
    escrow_id = active(env)
    report(env, escrow_id, 3, 1)
    locked = TOTAL - RESERVE[3]

    result = env.escrow.confirm(escrow_id, 0, 5, None, env.client)

    base = AMOUNTS[0] * locked // TOTAL
    assert result.event("MilestoneSettled").args["toProvider"] == base
    assert env.escrow.get_escrow(escrow_id).locked == locked - base
    check_books(env, escrow_id)
