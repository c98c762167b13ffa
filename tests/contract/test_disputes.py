"""openDispute, resolveDispute and settleStaleDispute (docs/interface.md section 1)."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.types import ZERO_ADDRESS, ZERO_HASH, MilestoneState, Status
from tests.contract.support_breach import (
    BPS,
    REASON,
    at,
    check_books,
    confirm,
    deliver,
    quick,
    quick_active,
    quick_create,
    report,
    tx_time,
)
from tests.support import ARBITRATION, REVIEW, EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


AMOUNTS = (1_000_003, 2_000_001)  # odd amounts, so every split rounds


def _delivered(env: EscrowEnv, amounts: tuple[int, ...] = AMOUNTS) -> tuple[int, int]:
    """An active escrow whose milestone 0 is delivered; returns (escrowId, deliveredAt)."""
    escrow_id = quick_active(env, env.params(amounts))
    return escrow_id, deliver(env, escrow_id, 0)


def _disputed(env: EscrowEnv, amounts: tuple[int, ...] = AMOUNTS) -> tuple[int, int]:
    """An active escrow whose milestone 0 is disputed; returns (escrowId, disputedAt)."""
    escrow_id, _ = _delivered(env, amounts)
    return escrow_id, quick(env, "openDispute", escrow_id, 0, REASON, sender=env.client)


# ------------------------------------------------------------------ openDispute


def test_openDispute_freezes_a_delivered_milestone_for_the_arbiter(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)
    before = env.escrow.get_escrow(escrow_id)

    result = env.escrow.open_dispute(escrow_id, 0, REASON, env.client)

    assert [e.name for e in result.events] == ["DisputeOpened"]
    assert result.event("DisputeOpened").args == {
        "escrowId": escrow_id,
        "milestone": 0,
        "reasonHash": REASON,
    }
    milestone = env.escrow.get_milestone(escrow_id, 0)
    assert milestone.state == MilestoneState.DISPUTED
    assert milestone.since == tx_time(env, result)
    assert env.escrow.get_escrow(escrow_id) == before
    assert env.escrow.get_milestone(escrow_id, 1).state == MilestoneState.NONE
    check_books(env, escrow_id)


def test_openDispute_is_allowed_at_the_last_second_of_the_review_window(env: EscrowEnv) -> None:
    escrow_id, delivered_at = _delivered(env)
    at(env, delivered_at + REVIEW)

    result = env.escrow.open_dispute(escrow_id, 0, REASON, env.client)

    assert tx_time(env, result) == delivered_at + REVIEW
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DISPUTED
    assert env.escrow.get_milestone(escrow_id, 0).since == delivered_at + REVIEW


def test_openDispute_is_refused_one_second_after_the_review_window(env: EscrowEnv) -> None:
    escrow_id, delivered_at = _delivered(env)
    at(env, delivered_at + REVIEW + 1)

    with pytest.raises(rt.EscrowWindowClosed) as exc:
        env.escrow.open_dispute(escrow_id, 0, REASON, env.client)

    assert exc.value.endedAt == delivered_at + REVIEW
    assert exc.value.timestamp == delivered_at + REVIEW + 1
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DELIVERED


def test_openDispute_is_refused_to_anyone_but_the_client(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)

    for who in ("provider", "arbiter", "oracle", "stranger"):
        caller = getattr(env.parties, who).address
        with pytest.raises(rt.EscrowUnauthorizedCaller) as exc:
            env.escrow.open_dispute(escrow_id, 0, REASON, caller)
        assert exc.value.fields == {"caller": caller, "required": env.client}
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DELIVERED


def test_openDispute_refuses_an_undelivered_milestone(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.open_dispute(escrow_id, 1, REASON, env.client)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "milestone": 1,
        "state": MilestoneState.NONE,
    }


def test_openDispute_refuses_a_milestone_past_the_last(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)

    with pytest.raises(rt.EscrowMilestoneOutOfRange) as exc:
        env.escrow.open_dispute(escrow_id, 2, REASON, env.client)

    assert exc.value.fields == {"milestone": 2, "count": 2}


def test_openDispute_refuses_a_settled_milestone(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)
    confirm(env, escrow_id, 0, 4)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.open_dispute(escrow_id, 0, REASON, env.client)

    assert exc.value.state == MilestoneState.SETTLED
    assert (exc.value.escrowId, exc.value.milestone) == (escrow_id, 0)


def test_openDispute_refuses_an_escrow_without_an_arbiter(env: EscrowEnv) -> None:
    params = env.params(AMOUNTS, arbiter=ZERO_ADDRESS, terms=env.terms(arbitration_period=0))
    escrow_id = quick_active(env, params)
    deliver(env, escrow_id, 0)

    with pytest.raises(rt.EscrowNoArbiter) as exc:
        env.escrow.open_dispute(escrow_id, 0, REASON, env.client)

    assert exc.value.fields == {"escrowId": escrow_id}
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DELIVERED


def test_openDispute_refuses_a_proposed_escrow(env: EscrowEnv) -> None:
    escrow_id = quick_create(env, env.params(AMOUNTS))

    with pytest.raises(rt.EscrowInvalidStatus) as exc:
        env.escrow.open_dispute(escrow_id, 0, REASON, env.client)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "status": Status.PROPOSED,
        "required": Status.ACTIVE,
    }


def test_openDispute_refuses_a_milestone_already_disputed(env: EscrowEnv) -> None:
    escrow_id, disputed_at = _disputed(env)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.open_dispute(escrow_id, 0, REASON, env.client)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DISPUTED,
    }
    assert env.escrow.get_milestone(escrow_id, 0).since == disputed_at


def test_openDispute_keeps_the_client_from_confirming_the_milestone(env: EscrowEnv) -> None:
    escrow_id, _ = _disputed(env)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    assert exc.value.state == MilestoneState.DISPUTED

    confirmation = env.confirmation(escrow_id, 0, 5)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.confirm_with_sig(confirmation, env.sign(confirmation), env.parties.relayer)
    assert exc.value.state == MilestoneState.DISPUTED
    check_books(env, escrow_id)


def test_openDispute_keeps_the_milestone_from_timing_out(env: EscrowEnv) -> None:
    escrow_id, _ = _disputed(env)
    env.advance(REVIEW + ARBITRATION + 10)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.release_after_timeout(escrow_id, 0, env.parties.stranger)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DISPUTED,
    }


# --------------------------------------------------------------- resolveDispute


@pytest.mark.parametrize("provider_bps", [0, 3_333, 10_000])
def test_resolveDispute_settles_the_milestone_with_the_arbiters_split(
    env: EscrowEnv, provider_bps: int
) -> None:
    escrow_id, _ = _disputed(env)
    # an open reserve makes locked < nominal, so the milestone's base is pro rata
    report(env, escrow_id, 2, 1)
    before = env.escrow.get_escrow(escrow_id)
    base = AMOUNTS[0] * before.locked // before.nominal
    to_provider = base * provider_bps // BPS

    result = env.escrow.resolve_dispute(escrow_id, 0, provider_bps, env.arbiter)

    assert [e.name for e in result.events] == ["MilestoneSettled"]
    assert result.event("MilestoneSettled").args == {
        "escrowId": escrow_id,
        "milestone": 0,
        "how": 4,
        "rating": 0,
        "commentHash": ZERO_HASH,
        "toProvider": to_provider,
        "toClient": base - to_provider,
    }
    assert env.escrow.credits(env.provider) == to_provider
    assert env.escrow.credits(env.client) == base - to_provider
    milestone = env.escrow.get_milestone(escrow_id, 0)
    assert (milestone.state, milestone.since) == (MilestoneState.SETTLED, tx_time(env, result))
    after = env.escrow.get_escrow(escrow_id)
    assert after.status == Status.ACTIVE
    assert after.locked == before.locked - base
    assert after.nominal == AMOUNTS[1]
    assert after.reserved == before.reserved
    assert after.settled_count == 1
    check_books(env, escrow_id)


def test_resolveDispute_of_the_last_milestone_takes_all_locked_and_closes(env: EscrowEnv) -> None:
    escrow_id, _ = _disputed(env, (1_000_003,))

    result = env.escrow.resolve_dispute(escrow_id, 0, 3_333, env.arbiter)

    to_provider = 1_000_003 * 3_333 // BPS
    args = result.event("MilestoneSettled").args
    assert (args["toProvider"], args["toClient"]) == (to_provider, 1_000_003 - to_provider)
    view = env.escrow.get_escrow(escrow_id)
    assert (view.status, view.locked, view.nominal, view.settled_count) == (Status.CLOSED, 0, 0, 1)
    check_books(env, escrow_id)


def test_resolveDispute_is_refused_to_anyone_but_the_arbiter(env: EscrowEnv) -> None:
    escrow_id, _ = _disputed(env)

    for who in ("client", "provider", "oracle", "stranger"):
        caller = getattr(env.parties, who).address
        with pytest.raises(rt.EscrowUnauthorizedCaller) as exc:
            env.escrow.resolve_dispute(escrow_id, 0, 5_000, caller)
        assert exc.value.fields == {"caller": caller, "required": env.arbiter}
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DISPUTED


def test_resolveDispute_refuses_a_split_above_10000(env: EscrowEnv) -> None:
    escrow_id, _ = _disputed(env)

    for provider_bps in (10_001, 65_535):
        with pytest.raises(rt.EscrowInvalidSplit) as exc:
            env.escrow.resolve_dispute(escrow_id, 0, provider_bps, env.arbiter)
        assert exc.value.fields == {"providerBps": provider_bps}
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DISPUTED


def test_resolveDispute_is_allowed_at_the_last_second_of_the_arbitration_period(
    env: EscrowEnv,
) -> None:
    escrow_id, disputed_at = _disputed(env)
    at(env, disputed_at + ARBITRATION)

    result = env.escrow.resolve_dispute(escrow_id, 0, 10_000, env.arbiter)

    assert tx_time(env, result) == disputed_at + ARBITRATION
    assert result.event("MilestoneSettled").args["toProvider"] == AMOUNTS[0]
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.SETTLED


def test_resolveDispute_is_refused_after_the_arbitration_period(env: EscrowEnv) -> None:
    escrow_id, disputed_at = _disputed(env)
    at(env, disputed_at + ARBITRATION + 1)

    with pytest.raises(rt.EscrowWindowClosed) as exc:
        env.escrow.resolve_dispute(escrow_id, 0, 10_000, env.arbiter)

    assert exc.value.fields == {
        "endedAt": disputed_at + ARBITRATION,
        "timestamp": disputed_at + ARBITRATION + 1,
    }
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DISPUTED


def test_resolveDispute_refuses_a_milestone_not_in_dispute(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.resolve_dispute(escrow_id, 0, 5_000, env.arbiter)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DELIVERED,
    }


def test_resolveDispute_settles_the_milestone_only_once(env: EscrowEnv) -> None:
    escrow_id, _ = _disputed(env)
    env.escrow.resolve_dispute(escrow_id, 0, 2_500, env.arbiter)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.resolve_dispute(escrow_id, 0, 2_500, env.arbiter)
    assert exc.value.state == MilestoneState.SETTLED

    env.advance(ARBITRATION + 1)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)
    assert exc.value.state == MilestoneState.SETTLED
    check_books(env, escrow_id)


# ------------------------------------------------------------ settleStaleDispute


def test_settleStaleDispute_is_refused_while_the_arbitration_period_runs(env: EscrowEnv) -> None:
    escrow_id, disputed_at = _disputed(env)

    with pytest.raises(rt.EscrowWindowOpen) as exc:
        env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)
    assert exc.value.fields == {"endsAt": disputed_at + ARBITRATION, "timestamp": disputed_at + 1}

    at(env, disputed_at + ARBITRATION)
    with pytest.raises(rt.EscrowWindowOpen) as exc:
        env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)
    assert exc.value.fields == {
        "endsAt": disputed_at + ARBITRATION,
        "timestamp": disputed_at + ARBITRATION,
    }
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DISPUTED


def test_settleStaleDispute_splits_the_milestone_50_50_for_anyone_after_the_arbitration_period(
    env: EscrowEnv,
) -> None:
    escrow_id, disputed_at = _disputed(env)
    at(env, disputed_at + ARBITRATION + 1)
    base = AMOUNTS[0]  # locked == nominal: nothing reserved
    to_client = base - base * 5_000 // BPS  # the client's half: base - floor(base / 2)

    result = env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)

    assert result.event("MilestoneSettled").args == {
        "escrowId": escrow_id,
        "milestone": 0,
        "how": 5,
        "rating": 0,
        "commentHash": ZERO_HASH,
        "toProvider": 500_001,
        "toClient": to_client,
    }
    assert to_client == 500_002
    assert env.escrow.credits(env.provider) == 500_001
    assert env.escrow.credits(env.client) == 500_002
    milestone = env.escrow.get_milestone(escrow_id, 0)
    assert milestone.state == MilestoneState.SETTLED
    assert milestone.since == disputed_at + ARBITRATION + 1
    view = env.escrow.get_escrow(escrow_id)
    assert (view.status, view.locked, view.nominal) == (Status.ACTIVE, AMOUNTS[1], AMOUNTS[1])
    check_books(env, escrow_id)


def test_settleStaleDispute_splits_a_pro_rata_base_when_a_reserve_is_open(env: EscrowEnv) -> None:
    escrow_id, disputed_at = _disputed(env)
    _, reported = report(env, escrow_id, 3, 1)
    reserve = reported.event("BreachReported").args["reserved"]
    total = sum(AMOUNTS)
    assert reserve == 2_000 * total // BPS
    at(env, disputed_at + ARBITRATION + 1)
    base = AMOUNTS[0] * (total - reserve) // total

    result = env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)

    args = result.event("MilestoneSettled").args
    assert (args["toProvider"], args["toClient"]) == (base // 2, base - base // 2)
    assert env.escrow.get_escrow(escrow_id).locked == total - reserve - base
    check_books(env, escrow_id)


def test_settleStaleDispute_refuses_an_undisputed_milestone(env: EscrowEnv) -> None:
    escrow_id, _ = _delivered(env)
    env.advance(REVIEW + ARBITRATION + 10)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)

    assert exc.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.DELIVERED,
    }


def test_settleStaleDispute_settles_the_milestone_only_once(env: EscrowEnv) -> None:
    escrow_id, disputed_at = _disputed(env)
    at(env, disputed_at + ARBITRATION + 1)
    env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)

    with pytest.raises(rt.EscrowInvalidMilestoneState) as exc:
        env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)
    assert exc.value.state == MilestoneState.SETTLED
    assert env.escrow.credits(env.provider) == 500_001
    check_books(env, escrow_id)


def test_settleStaleDispute_of_the_last_milestone_closes_the_escrow(env: EscrowEnv) -> None:
    escrow_id, disputed_at = _disputed(env, (7,))
    at(env, disputed_at + ARBITRATION + 1)

    result = env.escrow.settle_stale_dispute(escrow_id, 0, env.parties.stranger)

    args = result.event("MilestoneSettled").args
    assert (args["toProvider"], args["toClient"]) == (3, 4)
    assert env.escrow.get_escrow(escrow_id).status == Status.CLOSED
    check_books(env, escrow_id)
