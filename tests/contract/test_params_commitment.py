"""The parameters' commitment: every function that takes `(escrowId, p)` refuses parameters that
do not hash to the `paramsHash` stored at creation, with `EscrowParamsMismatch(escrowId, expected,
actual)`, before anything else is checked or changed (docs/interface.md section 1).

One test matrix for the property: every such function of the ABI (the list is checked against the
ABI, so a new function cannot be missed) times a change in each kind of field (a party, an amount,
a term, the terms hash), and every such function refuses an unknown escrow id."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from backend.chain import revert_types as rt
from backend.chain.artifacts import load_artifact
from backend.chain.transactions import send
from backend.chain.types import ZERO_ADDRESS, ZERO_HASH, EscrowParams, Status
from tests.contract.support_breach import deliver, params_hash, quick_active, quick_create, report
from tests.support import EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


def single_field_variants(env: EscrowEnv, p: EscrowParams) -> dict[str, EscrowParams]:
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
    variants = single_field_variants(env, params)
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


def functions_taking_params() -> set[str]:
    """Names of the ABI functions whose first two inputs are `(uint256 escrowId, tuple p)`."""
    abi = load_artifact("QualityEscrow").abi
    return {
        item["name"]
        for item in abi
        if item.get("type") == "function"
        and len(item.get("inputs", [])) >= 2
        and item["inputs"][0]["name"] == "escrowId"
        and item["inputs"][1]["type"] == "tuple"
    }


def test_the_matrix_covers_every_function_taking_escrowId_and_params() -> None:
    assert {name for name, _, _ in CALLS} == functions_taking_params()


#: one change per kind of field; each makes a different hash
WRONG: dict[str, Any] = {
    "a party": lambda env, p: replace(p, provider=env.parties.stranger.address),
    "an amount": lambda env, p: replace(p, milestone_amounts=(p.milestone_amounts[0], 1_999)),
    "a term": lambda env, p: replace(p, terms=replace(p.terms, review_period=1)),
    "the terms hash": lambda env, p: replace(p, terms_hash=b"\x99" * 32),
}


@pytest.mark.parametrize("change", sorted(WRONG))
@pytest.mark.parametrize(("name", "who", "args"), CALLS, ids=[c[0] for c in CALLS])
def test_every_function_taking_params_refuses_params_that_do_not_hash_to_the_commitment(
    env: EscrowEnv, name: str, who: str, args: tuple[Any, ...], change: str
) -> None:
    params = env.params((1_000, 2_000))
    if name in ("cancel", "accept"):
        escrow_id = quick_create(env, params)
    else:
        escrow_id = quick_active(env, params)
        deliver(env, escrow_id, 0)
        report(env, escrow_id, 1, 1)
    before = env.escrow.get_escrow(escrow_id)
    wrong: EscrowParams = WRONG[change](env, params)
    sender = getattr(env.parties, who).address
    fn = env.escrow.contract.functions[name](escrow_id, wrong.to_abi(), *args)
    with pytest.raises(rt.EscrowParamsMismatch) as exc:
        send(env.w3, env.escrow.contract, fn, sender)
    assert exc.value.fields == {
        "escrowId": escrow_id,
        "expected": params_hash(params),
        "actual": params_hash(wrong),
    }
    assert env.escrow.get_escrow(escrow_id) == before


@pytest.mark.parametrize("which", ["zero", "next", "max"])
@pytest.mark.parametrize(("name", "who", "args"), CALLS, ids=[c[0] for c in CALLS])
def test_every_function_taking_params_refuses_an_unknown_escrow_id_first(
    env: EscrowEnv, name: str, who: str, args: tuple[Any, ...], which: str
) -> None:
    """An id no escrow has is refused with `EscrowNotFound`, before any hash comparison (the
    params are the true ones of the escrow created just before)."""
    params = env.params((1_000, 2_000))
    quick_create(env, params)
    escrow_id = {"zero": 0, "next": env.escrow.escrow_count() + 1, "max": 2**256 - 1}[which]
    sender = getattr(env.parties, who).address
    fn = env.escrow.contract.functions[name](escrow_id, params.to_abi(), *args)
    with pytest.raises(rt.EscrowNotFound) as not_found:
        send(env.w3, env.escrow.contract, fn, sender)
    assert not_found.value.fields == {"escrowId": escrow_id}
