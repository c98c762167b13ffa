
"""createEscrow: ids, the EscrowCreated event, the stored commitment, the money pulled, and every
refusal docs/interface.md lists for creation (each leaving the chain untouched)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from backend.chain import revert_types as rt
from backend.chain.client import EscrowClient
from backend.chain.deploy import deploy_escrow
from backend.chain.errors import ContractRevert
from backend.chain.types import ZERO_ADDRESS, EscrowParams, MilestoneState, MilestoneView, Status
from tests.contract.support_core import (
    ahead,
    event_names,
    gas_cost,
    params_event_dict,
    python_params_hash,
    send_fn,
    view,
)
from tests.support import ETH, PAYOUTS, EscrowEnv

MAX_TOTAL = 2**112


def _create_fn(env: EscrowEnv, p: EscrowParams) -> Any:
    return env.escrow.contract.functions.createEscrow(p.to_abi())


def _chain_state(env: EscrowEnv, p: EscrowParams) -> dict[str, int]:
    """Everything a refused creation of `p` must leave as it was."""
    state = {
        "count": env.escrow.escrow_count(),
        "client.eth": env.balance(env.client),
        "escrow.eth": env.balance(env.escrow.address),
    }
    if p.token in (env.token, env.fee_token):
        state["client.token"] = env.balance(env.client, p.token)
        state["escrow.token"] = env.balance(env.escrow.address, p.token)
    return state


def _assert_refused(
    env: EscrowEnv,
    p: EscrowParams,
    error: type[ContractRevert],
    fields: dict[str, Any],
    *,
    sender: str | None = None,
    value: int | None = None,
) -> None:
    """Creation of `p` fails with exactly `error(**fields)` and changes nothing."""
    before = _chain_state(env, p)
    sent_value = value if value is not None else (p.total if p.is_eth else 0)
    with pytest.raises(error) as ei:
        send_fn(env, _create_fn(env, p), sender or p.client, sent_value)
    assert ei.value.fields == fields
    assert _chain_state(env, p) == before


# ------------------------------------------------------------------------------ success


def test_createEscrow_numbers_escrows_from_one(env: EscrowEnv) -> None:
    # a fresh deployment, so that no escrow made elsewhere in the session can shift the ids
    fresh = EscrowClient(env.w3, deploy_escrow(env.w3, env.parties.deployer.address).address)
    assert fresh.escrow_count() == 0
    p = env.params()
    create = fresh.contract.functions.createEscrow(p.to_abi())
    assert create.call({"from": env.client, "value": p.total}) == 1
    first, _ = fresh.create_escrow(p, env.client)
    second, result = fresh.create_escrow(env.params((5,)), env.client)
    assert (first, second) == (1, 2)
    assert result.event("EscrowCreated").args["escrowId"] == 2
    assert fresh.escrow_count() == 2
    assert fresh.params_hash(1) == python_params_hash(p)


def test_createEscrow_emits_EscrowCreated_with_the_full_params(env: EscrowEnv) -> None:
    p = env.params((ETH, 2 * ETH, 3))
    escrow_id, result = env.escrow.create_escrow(p, env.client)
    assert event_names(result) == ["EscrowCreated"]
    assert result.event("EscrowCreated").args == {
        "escrowId": escrow_id,
        "client": env.client,
        "provider": env.provider,
        "params": params_event_dict(p),
    }
    assert EscrowParams.from_abi(result.event("EscrowCreated").args["params"]) == p


def test_createEscrow_records_a_proposed_escrow_with_the_total_locked(env: EscrowEnv) -> None:
    p = env.params((ETH, 2 * ETH, 7))
    escrow_id = env.create(p)
    total = 3 * ETH + 7
    assert env.escrow.get_escrow(escrow_id) == view(Status.PROPOSED, total, total, 3)
    for m in range(3):
        assert env.escrow.get_milestone(escrow_id, m) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.credits(env.client) == 0
    assert env.escrow.credits(env.provider) == 0


def test_createEscrow_stores_the_abi_hash_of_the_params(env: EscrowEnv) -> None:
    p = env.params((ETH, 3), token=env.token)
    escrow_id = env.create(p)
    expected = python_params_hash(p)
    assert env.escrow.params_hash(escrow_id) == expected
    assert env.escrow.hash_params(p) == expected
    other = replace(p, milestone_amounts=(ETH, 4))
    assert env.escrow.hash_params(other) == python_params_hash(other) != expected


def test_createEscrow_pulls_the_eth_total_as_value(env: EscrowEnv) -> None:
    p = env.params((ETH, 2 * ETH))
    client_before = env.balance(env.client)
    escrow_before = env.balance(env.escrow.address)
    _, result = env.escrow.create_escrow(p, env.client)
    assert env.balance(env.escrow.address) == escrow_before + 3 * ETH
    assert env.balance(env.client) == client_before - 3 * ETH - gas_cost(env, result)


def test_createEscrow_pulls_the_token_total_from_the_client(env: EscrowEnv) -> None:
    p = env.params((1_000_000, 2_500_001), token=env.token)
    env.fund_token(env.token, env.client, p.total + 5)
    eth_before = env.balance(env.escrow.address)
    escrow_id, result = env.escrow.create_escrow(p, env.client)
    assert env.balance(env.client, env.token) == 5
    assert env.balance(env.escrow.address, env.token) == 3_500_001
    assert env.balance(env.escrow.address) == eth_before
    assert event_names(result) == ["EscrowCreated"]  # the token's Transfer is not ours
    assert result.event("EscrowCreated").args == {
        "escrowId": escrow_id,
        "client": env.client,
        "provider": env.provider,
        "params": params_event_dict(p),
    }
    assert env.escrow.get_escrow(escrow_id) == view(Status.PROPOSED, 3_500_001, 3_500_001, 2)


def test_createEscrow_works_with_a_token_that_returns_nothing(env: EscrowEnv) -> None:
    p = env.params((400, 600), token=env.no_return_token)
    escrow_id = env.create(p, token_contract="NoReturnToken")
    assert env.balance(env.client, env.no_return_token, "NoReturnToken") == 0
    assert env.balance(env.escrow.address, env.no_return_token, "NoReturnToken") == 1_000
    assert env.escrow.get_escrow(escrow_id) == view(Status.PROPOSED, 1_000, 1_000, 2)
    assert env.escrow.params_hash(escrow_id) == python_params_hash(p)


def test_createEscrow_accepts_64_milestones(env: EscrowEnv) -> None:
    amounts = tuple(range(1, 65))
    p = env.params(amounts)
    escrow_id, result = env.escrow.create_escrow(p, env.client)
    assert result.event("EscrowCreated").args["params"]["milestoneAmounts"] == list(amounts)
    assert env.escrow.get_escrow(escrow_id) == view(Status.PROPOSED, 2_080, 2_080, 64)
    assert env.escrow.params_hash(escrow_id) == python_params_hash(p)


def test_createEscrow_accepts_a_total_of_2_pow_112_minus_1(env: EscrowEnv) -> None:
    p = env.params((2**111, 2**111 - 1), token=env.token)
    escrow_id = env.create(p)
    total = MAX_TOTAL - 1
    assert env.escrow.get_escrow(escrow_id) == view(Status.PROPOSED, total, total, 2)
    assert env.balance(env.escrow.address, env.token) == total


def test_createEscrow_accepts_a_zero_arbitration_period_without_an_arbiter(
    env: EscrowEnv,
) -> None:
    p = env.params(arbiter=ZERO_ADDRESS, terms=env.terms(arbitration_period=0))
    escrow_id, result = env.escrow.create_escrow(p, env.client)
    assert result.event("EscrowCreated").args["params"] == params_event_dict(p)
    assert env.escrow.get_escrow(escrow_id).status == Status.PROPOSED


def test_createEscrow_accepts_a_delivery_deadline_equal_to_the_block_timestamp(
    env: EscrowEnv,
) -> None:
    now = ahead(env)
    p = env.params(terms=env.terms(delivery_deadline=now))
    escrow_id, result = env.escrow.create_escrow(p, env.client)
    assert env.w3.eth.get_block(result.block_number)["timestamp"] == now
    assert env.escrow.get_escrow(escrow_id).status == Status.PROPOSED


def test_createEscrow_accepts_bps_of_exactly_10000(env: EscrowEnv) -> None:
    terms = env.terms(
        rating_payout_bps=(10_000,) * 5,
        breach_refund_bps=10_000,
        streak_refund_bps=10_000,
        incident_refund_bps=10_000,
        max_refund_bps=10_000,
    )
    p = env.params(terms=terms)
    escrow_id, result = env.escrow.create_escrow(p, env.client)
    assert result.event("EscrowCreated").args["params"]["terms"] == params_event_dict(p)["terms"]
    assert env.escrow.get_escrow(escrow_id).status == Status.PROPOSED


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("who", ["provider", "stranger"])
def test_createEscrow_refuses_a_caller_other_than_the_client(env: EscrowEnv, who: str) -> None:
    caller = getattr(env.parties, who).address
    _assert_refused(
        env,
        env.params(),
        rt.EscrowUnauthorizedCaller,
        {"caller": caller, "required": env.client},
        sender=caller,
    )


def test_createEscrow_refuses_a_zero_provider(env: EscrowEnv) -> None:
    p = env.params(provider=ZERO_ADDRESS)
    _assert_refused(env, p, rt.EscrowInvalidProvider, {"provider": ZERO_ADDRESS})


def test_createEscrow_refuses_the_client_as_provider(env: EscrowEnv) -> None:
    p = env.params(provider=env.client)
    _assert_refused(env, p, rt.EscrowInvalidProvider, {"provider": env.client})


@pytest.mark.parametrize("count", [0, 65])
def test_createEscrow_refuses_0_or_65_milestones(env: EscrowEnv, count: int) -> None:
    p = env.params((1,) * count)
    _assert_refused(env, p, rt.EscrowInvalidMilestoneCount, {"count": count})


@pytest.mark.parametrize(
    ("amounts", "index"), [((0, 5), 0), ((5, 0, 7), 1), ((1,) * 63 + (0,), 63)]
)
def test_createEscrow_refuses_a_zero_milestone_amount(
    env: EscrowEnv, amounts: tuple[int, ...], index: int
) -> None:
    p = env.params(amounts)
    _assert_refused(env, p, rt.EscrowZeroMilestoneAmount, {"milestone": index})


@pytest.mark.parametrize(
    ("amounts", "reported"),
    [
        ((2**111, 2**111), MAX_TOTAL),
        ((MAX_TOTAL - 1, 1), MAX_TOTAL),
        ((MAX_TOTAL,), MAX_TOTAL),
        ((1, 2**256 - 1), 2**256 - 1),  # would overflow a plain uint256 sum
    ],
)
def test_createEscrow_refuses_a_total_of_2_pow_112_or_more(
    env: EscrowEnv, amounts: tuple[int, ...], reported: int
) -> None:
    p = env.params(amounts, token=env.token)
    env.fund_token(env.token, env.client, MAX_TOTAL)
    _assert_refused(env, p, rt.EscrowTotalTooLarge, {"total": reported})


@pytest.mark.parametrize(
    ("table", "index", "bps"),
    [
        ((2_000, 4_000, 3_999, 8_000, 10_000), 2, 3_999),  # decreases
        ((10_000, 0, 0, 0, 10_000), 1, 0),  # decreases right after the first
        ((2_000, 4_000, 6_000, 8_000, 9_999), 4, 9_999),  # does not end at 10000
        ((0, 0, 0, 0, 0), 4, 0),
        ((2_000, 4_000, 6_000, 8_000, 10_001), 4, 10_001),  # ends above 10000
        ((10_001, 10_001, 10_001, 10_001, 10_000), 4, 10_000),  # above 10000, then decreases
        ((10_000, 10_000, 10_000, 10_000, 65_535), 4, 65_535),
    ],
)
def test_createEscrow_refuses_a_bad_payout_table(
    env: EscrowEnv, table: tuple[int, int, int, int, int], index: int, bps: int
) -> None:
    p = env.params(terms=env.terms(rating_payout_bps=table))
    _assert_refused(env, p, rt.EscrowInvalidPayoutTable, {"index": index, "bps": bps})


@pytest.mark.parametrize(
    "field", ["breach_refund_bps", "streak_refund_bps", "incident_refund_bps", "max_refund_bps"]
)
@pytest.mark.parametrize("bps", [10_001, 65_535])
def test_createEscrow_refuses_any_bps_above_10000(env: EscrowEnv, field: str, bps: int) -> None:
    p = env.params(terms=env.terms(**{field: bps}))
    _assert_refused(env, p, rt.EscrowBpsTooLarge, {"bps": bps})


@pytest.mark.parametrize(
    ("field", "which"),
    [("review_period", 0), ("challenge_period", 1), ("arbitration_period", 2)],
)
def test_createEscrow_refuses_a_zero_period(env: EscrowEnv, field: str, which: int) -> None:
    p = env.params(terms=env.terms(**{field: 0}))
    assert p.arbiter == env.arbiter
    _assert_refused(env, p, rt.EscrowZeroPeriod, {"which": which})


def test_createEscrow_refuses_a_zero_challenge_period_without_an_arbiter(env: EscrowEnv) -> None:
    p = env.params(arbiter=ZERO_ADDRESS, terms=env.terms(challenge_period=0, arbitration_period=0))
    _assert_refused(env, p, rt.EscrowZeroPeriod, {"which": 1})


def test_createEscrow_refuses_a_delivery_deadline_already_past(env: EscrowEnv) -> None:
    now = ahead(env)
    p = env.params(terms=env.terms(delivery_deadline=now - 1))
    _assert_refused(
        env, p, rt.EscrowDeadlinePassed, {"deliveryDeadline": now - 1, "timestamp": now}
    )


@pytest.mark.parametrize("delta", [-1, 1, -(3 * ETH)])
def test_createEscrow_refuses_a_wrong_eth_amount(env: EscrowEnv, delta: int) -> None:
    p = env.params((ETH, 2 * ETH))
    sent = 3 * ETH + delta
    _assert_refused(env, p, rt.EscrowWrongValue, {"sent": sent, "required": 3 * ETH}, value=sent)


def test_createEscrow_refuses_eth_sent_with_an_erc20_escrow(env: EscrowEnv) -> None:
    p = env.params((100, 200), token=env.token)
    env.fund_token(env.token, env.client, p.total)
    _assert_refused(env, p, rt.EscrowWrongValue, {"sent": 300, "required": 0}, value=300)


def test_createEscrow_refuses_a_token_that_is_not_a_contract(env: EscrowEnv) -> None:
    eoa = env.parties.stranger.address
    p = env.params((100, 200), token=eoa)
    _assert_refused(env, p, rt.EscrowTokenNotContract, {"token": eoa})


def test_createEscrow_refuses_a_fee_on_transfer_token(env: EscrowEnv) -> None:
    p = env.params((600, 400), token=env.fee_token)
    env.fund_token(env.fee_token, env.client, 1_000, "FeeOnTransferToken")
    _assert_refused(
        env,
        p,
        rt.EscrowTokenAmountMismatch,
        {"token": env.fee_token, "expected": 1_000, "received": 990},
    )


def test_createEscrow_keeps_counting_after_a_refusal(env: EscrowEnv) -> None:
    first = env.create(env.params((5,)))
    with pytest.raises(rt.EscrowInvalidMilestoneCount):
        send_fn(env, _create_fn(env, env.params(())), env.client)
    second = env.create(env.params((6,)))
    assert second == first + 1
    assert env.escrow.escrow_count() == second
    assert env.escrow.params_hash(second + 1) == b"\x00" * 32


def test_createEscrow_keeps_the_payout_table_in_the_commitment(env: EscrowEnv) -> None:
    p = env.params()
    assert p.terms.rating_payout_bps == PAYOUTS
    escrow_id = env.create(p)
    changed = replace(
        p, terms=replace(p.terms, rating_payout_bps=(2_000, 4_000, 6_000, 8_001, 10_000))
    )
    assert env.escrow.params_hash(escrow_id) != python_params_hash(changed)
    assert env.escrow.params_hash(escrow_id) == python_params_hash(p)
