"""Views of unknown ids, `hashParams`, and the params commitment every call checks
(DESIGN.md section 2)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from backend.chain import revert_types as rt
from backend.chain.transactions import send
from backend.chain.types import (
    ZERO_ADDRESS,
    ZERO_HASH,
    BreachState,
    BreachView,
    EscrowParams,
    EscrowView,
    MilestoneState,
    MilestoneView,
    Status,
)
from tests.contract.support_breach import (
    check_all_books,
    deliver,
    params_hash,
    quick_active,
    quick_create,
    report,
)
from tests.support import EscrowEnv


@pytest.fixture(autouse=True)
def _books_balance_after_every_test(env: EscrowEnv) -> Iterator[None]:
    """After every scenario, each escrow's credits == total - locked - reserved."""
    yield
    check_all_books(env)


U256_MAX = 2**256 - 1
ZERO_ESCROW = EscrowView(Status.NONE, 0, 0, 0, 0, 0, 0, 0)
ZERO_MILESTONE = MilestoneView(MilestoneState.NONE, 0)
ZERO_BREACH = BreachView(BreachState.NONE, 0, 0, 0, 0, 0)


def test_getEscrow_of_an_unknown_id_returns_zeros(env: EscrowEnv) -> None:
    escrow_id = quick_active(env, env.params())
    assert env.escrow.get_escrow(escrow_id).status == Status.ACTIVE

    for unknown in (0, escrow_id + 1, U256_MAX):
        assert env.escrow.get_escrow(unknown) == ZERO_ESCROW
        assert env.escrow.params_hash(unknown) == ZERO_HASH


def test_getMilestone_of_an_unknown_escrow_or_milestone_returns_zeros(env: EscrowEnv) -> None:
    escrow_id = quick_active(env, env.params())
    deliver(env, escrow_id, 0)
    assert env.escrow.get_milestone(escrow_id, 0).state == MilestoneState.DELIVERED

    for unknown_escrow, milestone in ((0, 0), (escrow_id + 1, 0), (U256_MAX, 3)):
        assert env.escrow.get_milestone(unknown_escrow, milestone) == ZERO_MILESTONE
    for milestone in (1, 2, 63, 64, U256_MAX):  # undelivered, or past the last milestone
        assert env.escrow.get_milestone(escrow_id, milestone) == ZERO_MILESTONE


def test_getBreach_of_an_unknown_id_returns_zeros(env: EscrowEnv) -> None:
    escrow_id = quick_active(env, env.params())
    assert env.escrow.get_breach(escrow_id, 0) == ZERO_BREACH
    report(env, escrow_id, 1, 1)
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.REPORTED

    for unknown_escrow, breach_id in ((0, 0), (escrow_id + 1, 0), (U256_MAX, U256_MAX)):
        assert env.escrow.get_breach(unknown_escrow, breach_id) == ZERO_BREACH
    for breach_id in (1, 2**32, U256_MAX):
        assert env.escrow.get_breach(escrow_id, breach_id) == ZERO_BREACH


def _param_sets(env: EscrowEnv) -> list[EscrowParams]:
    base = env.params()
    return [
        base,
        env.params((1,), token=env.token, terms_hash=b"\xff" * 32),
        env.params(tuple(range(1, 65))),
        env.params((2**112 - 2, 1), arbiter=ZERO_ADDRESS, terms=env.terms(arbitration_period=0)),
        replace(
            base,
            terms=env.terms(
                rating_payout_bps=(0, 0, 0, 0, 10_000),
                breach_refund_bps=10_000,
                streak_refund_bps=1,
                incident_refund_bps=65_535,
                max_refund_bps=0,
                review_period=2**32 - 1,
                challenge_period=1,
                arbitration_period=2**32 - 1,
                delivery_deadline=2**64 - 1,
            ),
        ),
    ]


def test_hashParams_is_keccak256_of_the_abi_encoded_params(env: EscrowEnv) -> None:
    hashes = set()
    for params in _param_sets(env):
        expected = params_hash(params)
        assert env.escrow.hash_params(params) == expected
        hashes.add(expected)
    assert len(hashes) == 5


def test_hashParams_matches_the_commitment_stored_at_creation(env: EscrowEnv) -> None:
    for params in (env.params(), env.params((5, 6, 7), token=env.token)):
        escrow_id = env.create(params)
        assert env.escrow.params_hash(escrow_id) == params_hash(params)
        assert env.escrow.hash_params(params) == params_hash(params)


def _single_field_variants(env: EscrowEnv, p: EscrowParams) -> dict[str, EscrowParams]:
    t = p.terms
    other = env.parties.stranger.address
    payouts = list(t.rating_payout_bps)
    variants: dict[str, EscrowParams] = {
        "client": replace(p, client=other),
        "provider": replace(p, provider=other),
        "token": replace(p, token=env.token),
        "oracle": replace(p, oracle=other),
        "arbiter": replace(p, arbiter=ZERO_ADDRESS),
        "termsHash": replace(p, terms_hash=b"\x12" * 32),
        "milestoneAmounts[0]": replace(p, milestone_amounts=(p.milestone_amounts[0] + 1, 2_000)),
        "milestoneAmounts[1]": replace(p, milestone_amounts=(p.milestone_amounts[0], 1_999)),
        "milestoneAmounts order": replace(p, milestone_amounts=(2_000, 1_000)),
        "milestoneAmounts one more": replace(p, milestone_amounts=(1_000, 2_000, 1)),
        "milestoneAmounts one less": replace(p, milestone_amounts=(3_000,)),
    }
    for i in range(5):
        table = payouts.copy()
        table[i] -= 1
        variants[f"ratingPayoutBps[{i}]"] = replace(
            p, terms=replace(t, rating_payout_bps=tuple(table))
        )
    for field in (
        "breach_refund_bps",
        "streak_refund_bps",
        "incident_refund_bps",
        "max_refund_bps",
        "review_period",
        "challenge_period",
        "arbitration_period",
        "delivery_deadline",
    ):
        changed = replace(t, **{field: getattr(t, field) + 1})
        variants[field] = replace(p, terms=changed)
    return variants


def test_accept_refuses_params_that_differ_in_any_single_field(env: EscrowEnv) -> None:
    params = env.params((1_000, 2_000))
    escrow_id = env.create(params)
    stored = env.escrow.params_hash(escrow_id)
    assert stored == params_hash(params)
    variants = _single_field_variants(env, params)
    assert len(variants) == 24

    for field, variant in variants.items():
        actual = params_hash(variant)
        assert actual != stored, field
        fn = env.escrow.contract.functions.accept(escrow_id, variant.to_abi())
        with pytest.raises(rt.EscrowParamsMismatch) as exc:
            send(env.w3, env.escrow.contract, fn, env.provider)
        assert exc.value.fields == {
            "escrowId": escrow_id,
            "expected": stored,
            "actual": actual,
        }, field

    assert env.escrow.get_escrow(escrow_id).status == Status.PROPOSED
    env.escrow.accept(escrow_id, env.provider)  # the true params still work
    assert env.escrow.get_escrow(escrow_id).status == Status.ACTIVE


#: every call after creation, with arguments that would pass with the right params
CALLS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("cancel", "client", ()),
    ("accept", "provider", ()),
    ("submitDelivery", "provider", (1, b"\x22" * 32)),
    ("confirm", "client", (1, 5, ZERO_HASH)),
    ("confirmWithSig", "relayer", (1, 5, ZERO_HASH, 2**40, b"\x00" * 65)),
    ("releaseAfterTimeout", "stranger", (0,)),
    ("openDispute", "client", (0, ZERO_HASH)),
    ("resolveDispute", "arbiter", (0, 5_000)),
    ("settleStaleDispute", "stranger", (0,)),
    ("reportBreach", "oracle", (2, 2, ZERO_HASH)),
    ("challengeBreach", "provider", (0,)),
    ("resolveBreach", "arbiter", (0, True)),
    ("settleStaleBreach", "stranger", (0,)),
    ("finalizeBreach", "stranger", (0,)),
    ("reclaimExpired", "client", ()),
]


def test_paramsHash_commitment_is_checked_by_every_call_taking_params(env: EscrowEnv) -> None:
    params = env.params((1_000, 2_000))
    proposed = quick_create(env, params)
    active = quick_active(env, params)
    deliver(env, active, 0)
    report(env, active, 1, 1)
    wrong = replace(params, terms_hash=b"\x99" * 32)

    for name, who, args in CALLS:
        escrow_id = proposed if name in ("cancel", "accept") else active
        sender = getattr(env.parties, who).address
        fn = env.escrow.contract.functions[name](escrow_id, wrong.to_abi(), *args)
        with pytest.raises(rt.EscrowParamsMismatch) as exc:
            send(env.w3, env.escrow.contract, fn, sender)
        assert exc.value.fields == {
            "escrowId": escrow_id,
            "expected": params_hash(params),
            "actual": params_hash(wrong),
        }, name

    # an id no escrow has is refused before any hash comparison
    fn = env.escrow.contract.functions.accept(active + 1, params.to_abi())
    with pytest.raises(rt.EscrowNotFound) as not_found:
        send(env.w3, env.escrow.contract, fn, env.provider)
    assert not_found.value.fields == {"escrowId": active + 1}
