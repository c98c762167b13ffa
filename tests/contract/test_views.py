"""Views of unknown ids and `hashParams` (docs/interface.md section 1); the commitment every call
checks is `test_params_commitment.py`."""

from __future__ import annotations

from dataclasses import replace

import pytest

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
    deliver,
    params_hash,
    quick_active,
    report,
)
from tests.support import EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


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
