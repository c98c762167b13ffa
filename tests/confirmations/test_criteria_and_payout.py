"""A review's answers to the terms' acceptance criteria (bound in `commentHash`, stored, shown
with the escrow) and the typed-data answer's `payout`: what the rating credits each side now, by
the contract's own rule. On the real Hardhat node and both databases."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak

from backend.canonical import canonical_json
from backend.chain.types import BPS
from backend.escrows.payouts import settlement_split
from backend.index.indexer import index_once
from backend.services import Services
from tests.confirmations.support import (
    TestClient,
    confirmation_body,
    outbox_count,
    post_confirmation,
    relayer,
    review_count,
    settled_events,
    sign,
    typed_data,
)
from tests.support import ETH, PAYOUTS, EscrowEnv

CRITERIA = ["Service reachable at the agreed endpoint", "Nightly backups restorable"]
TERMS = {"version": 1, "title": "Managed hosting", "period_seconds": 86400,
         "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
         "acceptance_criteria": CRITERIA}
NO_CRITERIA = {k: v for k, v in TERMS.items() if k != "acceptance_criteria"}
ANSWERS = [{"index": 0, "met": True}, {"index": 1, "met": False, "note": "restore took 9 h"}]


def _escrow(env: EscrowEnv, client: TestClient, terms: dict[str, Any] | None = TERMS,
            **params: Any) -> int:
    """An active escrow of `terms` (stored first unless None: then a hash nobody stored)."""
    if terms is not None:
        answer = client.post("/api/terms", json=terms)
        assert answer.status_code == 201, answer.text
        params["terms_hash"] = answer.json()["terms_hash"]
    return env.create_active(env.params(**params))


# ------------------------------------------------------------------ criteria


def test_criteria_are_signed_stored_relayed_and_shown_with_the_escrow(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = _escrow(env, client)
    prepared = typed_data(client, escrow_id, 0, rating=4, comment="mostly there",
                          criteria=ANSWERS)
    review = {"comment": "mostly there", "attachments": [], "criteria": ANSWERS}
    assert prepared["review"] == review
    assert prepared["comment_hash"] == "0x" + keccak(canonical_json(review)).hex()
    assert prepared["review"]["criteria"][0] == {"index": 0, "met": True}  # no note: no key

    body = confirmation_body(prepared, sign(env.parties.client, prepared), criteria=ANSWERS)
    assert post_confirmation(client, escrow_id, 0, body).status_code == 202
    relayer(services).run_until_idle()
    [event] = settled_events(services, escrow_id, 0)
    assert "0x" + bytes(event["commentHash"]).hex() == prepared["comment_hash"]
    index_once(services)
    milestone = client.get(f"/api/escrows/{escrow_id}").json()["milestones"][0]
    assert (milestone["comment_hash"], milestone["review"]) == (prepared["comment_hash"], review)


def test_criteria_alone_make_a_review_and_changing_one_after_signing_is_refused(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = _escrow(env, client)
    all_met = [ANSWERS[0], {"index": 1, "met": True}]
    prepared = typed_data(client, escrow_id, 0, rating=5, criteria=all_met)
    assert prepared["comment_hash"] != "0x" + "00" * 32
    signature = sign(env.parties.client, prepared)
    flipped = [ANSWERS[0], {"index": 1, "met": False}]
    response = post_confirmation(client, escrow_id, 0,
                                 confirmation_body(prepared, signature, criteria=flipped))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden_signer"
    assert "2 acceptance criteria answered" in response.json()["detail"]
    # without criteria the signed review is another one as well
    response = post_confirmation(client, escrow_id, 0, confirmation_body(prepared, signature))
    assert response.status_code == 403
    assert (outbox_count(services), review_count(services)) == (0, 0)


@pytest.mark.parametrize(
    ("terms", "criteria", "status", "code", "detail"),
    [
        (NO_CRITERIA, [{"index": 0, "met": True}], 422, "out_of_range",
         "the escrow's terms list no acceptance_criteria"),
        (None, ANSWERS, 409, "terms_not_stored", "is not stored"),
        (TERMS, ANSWERS[:1], 422, "out_of_range", "2 entries, one per acceptance criterion"),
        (TERMS, [*ANSWERS, {"index": 2, "met": True}], 422, "out_of_range", "2 entries"),
        (TERMS, [], 422, "out_of_range", "criteria='0 entries'"),
        (TERMS, [{"index": 0, "met": "yes"}, ANSWERS[1]], 422, "out_of_range",
         "criteria[0].met='yes' is out of range: expected true or false"),
        (TERMS, [ANSWERS[1], ANSWERS[0]], 422, "out_of_range", "criteria[0].index=1"),
        (TERMS, [ANSWERS[0], {"index": 1}], 422, "out_of_range", "criteria[1].met=None"),
        (TERMS, [ANSWERS[0], {"index": 1, "met": False, "note": "n" * 501}], 413, "too_large",
         "criteria[1].note (characters) is 501"),
        (TERMS, {"0": True}, 422, "out_of_range", "criteria="),
    ],
    ids=["terms-without-criteria", "terms-not-stored", "one-short", "one-too-many", "empty",
         "met-not-boolean", "out-of-order", "met-missing", "note-501", "not-a-list"],
)
@pytest.mark.parametrize("route", ["typed-data", "confirmations"])
def test_criteria_that_do_not_answer_the_terms_are_refused_and_nothing_is_stored(
    hardhat_env: EscrowEnv, client: TestClient, services: Services, route: str,
    terms: dict[str, Any] | None, criteria: Any, status: int, code: str, detail: str,
) -> None:
    escrow_id = _escrow(hardhat_env, client, terms)
    body: dict[str, Any] = {"rating": 5, "criteria": criteria}
    if route == "confirmations":  # a well-formed signature, so the criteria are judged
        signed = hardhat_env.confirmation(escrow_id, 0, 5, deadline=2_000_000_000)
        body.update(deadline=signed.deadline, signature="0x" + hardhat_env.sign(signed).hex())
    response = client.post(f"/api/escrows/{escrow_id}/milestones/0/{route}", json=body)
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert detail in response.json()["detail"]
    assert (outbox_count(services), review_count(services)) == (0, 0)


# ------------------------------------------------------------------ payout


def test_the_typed_data_payout_is_what_the_confirmation_then_credits_after_a_reserve(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.escrow.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)  # 0.15 ETH reserved
    prepared = typed_data(client, escrow_id, 1, rating=3)
    # base = 2 ETH * locked 2.85 ETH / nominal 3 ETH = 1.9 ETH; the provider gets 60 % of it
    assert prepared["payout"] == {
        "to_provider": str(1_900_000_000_000_000_000 * PAYOUTS[2] // BPS),
        "to_client": str(1_900_000_000_000_000_000 * (BPS - PAYOUTS[2]) // BPS),
        "token": {"address": "0x" + "00" * 20, "symbol": "ETH", "decimals": 18},
    }
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    assert post_confirmation(client, escrow_id, 1, body).status_code == 202
    relayer(services).run_until_idle()
    [event] = settled_events(services, escrow_id, 1)
    assert (str(event["toProvider"]), str(event["toClient"])) == (
        prepared["payout"]["to_provider"], prepared["payout"]["to_client"]
    )


def test_the_payout_of_each_rating_names_the_escrows_token(
    hardhat_env: EscrowEnv, client: TestClient
) -> None:
    env = hardhat_env
    escrow_id = env.create_active(env.params((1_000_001, 3), token=env.token))
    for rating in range(1, 6):
        payout = typed_data(client, escrow_id, 0, rating=rating)["payout"]
        split = settlement_split(1_000_001, 1_000_004, 1_000_004, PAYOUTS[rating - 1])
        assert payout == {"to_provider": str(split.to_provider),
                          "to_client": str(split.to_client),
                          "token": {"address": env.token, "symbol": "TUSD", "decimals": 6}}
    last = typed_data(client, escrow_id, 1, rating=1)["payout"]
    assert (last["to_provider"], last["to_client"]) == ("0", "3")  # 3 * 2000 // 10000 = 0
