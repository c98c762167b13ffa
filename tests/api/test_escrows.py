"""`/api/escrows`: the indexed list and detail, `prepare` and `tx/{action}` transactions that
wallets send unchanged, and the statement export. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_utils import keccak
from sqlalchemy import delete, update

from backend.canonical import canonical_json
from backend.chain.types import ZERO_ADDRESS
from backend.db.models import ChainCursor, EventLog, Review
from backend.escrows.detail import DetailCache
from tests.api.support import ZERO_HASH, Api, api_on
from tests.support import ARBITRATION, CHALLENGE, DAY, ETH, PAYOUTS, REVIEW, TERMS_HASH, EscrowEnv

TERMS_DOC = {"version": 1, "title": "Managed hosting SLA", "period_seconds": 86400,
             "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}]}


def rules_json(env: EscrowEnv, **overrides: Any) -> dict[str, Any]:
    rules: dict[str, Any] = {
        "rating_payout_bps": list(PAYOUTS),
        "breach_refund_bps": 500,
        "streak_refund_bps": 1_000,
        "incident_refund_bps": 2_000,
        "max_refund_bps": 3_000,
        "review_period": REVIEW,
        "challenge_period": CHALLENGE,
        "arbitration_period": ARBITRATION,
        "delivery_deadline": env.now() + 30 * DAY,
    }
    rules.update(overrides)
    return rules


def prepare_body(env: EscrowEnv, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client": env.client,
        "provider": env.provider.lower(),
        "oracle": env.oracle,
        "arbiter": env.arbiter,
        "milestone_amounts": [str(ETH), str(2 * ETH)],
        "terms_document": TERMS_DOC,
        "rules": rules_json(env),
    }
    body.update(overrides)
    return body


# ------------------------------------------------------------------ detail and list


def test_escrow_detail_serves_params_milestones_breaches_and_balances_exactly(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    settled = env.escrow.confirm(escrow_id, 0, 4, None, env.client)
    _, reported = env.escrow.report_breach(escrow_id, 1, 7, b"\x44" * 32, env.oracle)
    api.index()

    body = api.ok("GET", f"/api/escrows/{escrow_id}")

    p = env.escrow.params(escrow_id)
    reserve = 3 * ETH * 500 // 10_000
    settled_block = env.w3.eth.get_block(settled.block_number)
    reported_block = env.w3.eth.get_block(reported.block_number)
    assert body["id"] == escrow_id
    assert body["chain_id"] == env.escrow.chain_id
    assert body["contract"] == env.escrow.address
    assert body["status"] == "active"
    assert body["params"] == p.to_json()
    assert body["params"]["milestoneAmounts"] == [str(ETH), str(2 * ETH)]
    assert body["token"] == {"address": ZERO_ADDRESS, "symbol": "ETH", "decimals": 18}
    assert body["balances"] == {
        "total": str(3 * ETH),
        "locked": str(2 * ETH - reserve),
        "nominal": str(2 * ETH),
        "reserved": str(reserve),
        "refunded": "0",
        "credited_provider": str(8 * ETH // 10),
        "credited_client": str(2 * ETH // 10),
    }
    first, second = body["milestones"]
    assert first == {
        "index": 0,
        "amount": str(ETH),
        "state": "settled",
        "delivered_at": first["delivered_at"],
        "delivery_hash": "0x" + "22" * 32,
        "delivery": None,  # a hash sent without a stored document
        "disputed_at": None,
        "dispute_reason_hash": None,
        "dispute_reason": None,
        "settled_at": int(settled_block["timestamp"]),
        "settled_tx": _hex(settled.tx_hash),
        "how": "confirmed",
        "rating": 4,
        "comment_hash": ZERO_HASH,
        "review": None,
        "to_provider": str(8 * ETH // 10),
        "to_client": str(2 * ETH // 10),
    }
    assert isinstance(first["delivered_at"], int) and first["delivered_at"] <= first["settled_at"]
    assert (second["state"], second["amount"], second["how"], second["to_provider"]) == (
        "none", str(2 * ETH), None, "0"
    )
    assert body["breaches"] == [
        {
            "id": 0,
            "kind": 1,
            "kind_name": "kpi_below_standard",
            "period": 7,
            "evidence_hash": "0x" + "44" * 32,
            "reserve": str(reserve),
            "state": "reported",
            "reported_at": int(reported_block["timestamp"]),
            "reported_tx": body["breaches"][0]["reported_tx"],
            "challenged_at": None,
            "settled_at": None,
            "outcome": None,
            "to_client": "0",
            "to_provider": "0",
        }
    ]
    assert body["breaches"][0]["reported_tx"] == _hex(reported.tx_hash)
    assert body["terms_document"] is None  # TERMS_HASH was never stored
    assert body["accepted_at"] is not None and body["created_at"] <= body["accepted_at"]
    # the indexed balances agree with the contract's own view
    view = env.escrow.get_escrow(escrow_id)
    assert (view.locked, view.reserved, view.nominal) == (
        2 * ETH - reserve, reserve, 2 * ETH
    )


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value).lower()


def test_escrow_detail_shows_token_decimals_symbol_stored_review_and_terms(api: Api) -> None:
    env = api.env
    terms_hash = api.ok("POST", "/api/terms", 201, json=TERMS_DOC)["terms_hash"]
    review = {"comment": "Looks good", "attachments": []}
    comment_hash = "0x" + keccak(canonical_json(review)).hex()
    with api.services.sessions() as session, session.begin():
        session.add(Review(comment_hash=comment_hash, canonical=canonical_json(review).decode(),
                           created_at=int(time.time())))
    params = env.params((1_500_000, 2_500_000), token=env.token, terms_hash=terms_hash)
    escrow_id = env.create_active(params)
    env.escrow.confirm(escrow_id, 1, 5, comment_hash, env.client)
    api.index()

    body = api.ok("GET", f"/api/escrows/{escrow_id}")

    assert body["token"] == {"address": env.token, "symbol": "TUSD", "decimals": 6}
    assert body["params"]["termsHash"] == terms_hash
    assert body["terms_document"] == TERMS_DOC
    assert body["milestones"][1]["comment_hash"] == comment_hash
    assert body["milestones"][1]["review"] == review
    assert body["milestones"][0]["review"] is None
    assert body["balances"]["credited_provider"] == "2500000"


def test_escrow_list_filters_by_client_provider_and_status_newest_first(api: Api) -> None:
    env = api.env
    stranger = env.parties.stranger.address
    first = env.create_active()
    second = env.create()
    third = env.create(env.params(client=stranger, provider=env.provider))
    fourth = env.create(env.params(provider=stranger))
    api.index()

    def ids(query: str) -> list[int]:
        return [e["id"] for e in api.ok("GET", f"/api/escrows{query}")["escrows"]]

    assert ids("") == [fourth, third, second, first]
    assert ids(f"?client={env.client.lower()}") == [fourth, second, first]
    assert ids(f"?provider={env.provider}") == [third, second, first]
    assert ids(f"?provider={env.provider}&client={stranger}") == [third]
    assert ids("?status=active") == [first]
    assert ids("?status=proposed") == [fourth, third, second]
    assert ids("?status=closed") == []

    page = api.ok("GET", "/api/escrows?limit=3&offset=0")
    assert (page["total"], page["limit"], page["offset"], page["next_offset"]) == (4, 3, 0, 3)
    last = api.ok("GET", "/api/escrows?limit=3&offset=3")
    assert [e["id"] for e in last["escrows"]] == [first]
    assert last["next_offset"] is None

    item = page["escrows"][2]
    assert item == {
        "id": second,
        "status": "proposed",
        "client": env.client,
        "provider": env.provider,
        "oracle": env.oracle,
        "arbiter": env.arbiter,
        "token": {"address": ZERO_ADDRESS, "symbol": "ETH", "decimals": 18},
        "terms_hash": "0x" + TERMS_HASH.hex(),
        "milestone_count": 2,
        "total": str(3 * ETH),
        "locked": str(3 * ETH),
        "reserved": "0",
        "refunded": "0",
        "created_block": item["created_block"],
        "created_tx": item["created_tx"],
        "created_at": item["created_at"],
        "accepted_at": None,
        "updated_block": item["created_block"],
        "roles": None,  # only with the `party` filter
    }


def test_escrow_list_filters_by_arbiter_oracle_and_party_naming_the_partys_roles(
    api: Api,
) -> None:
    env = api.env
    stranger = env.parties.stranger.address
    first = env.create_active()
    judged = env.create(env.params(arbiter=stranger))
    measured = env.create(env.params(oracle=stranger))
    theirs = env.create(env.params(client=stranger, provider=env.provider, arbiter=ZERO_ADDRESS))
    self_measured = env.create(env.params(oracle=env.client))
    api.index()

    def listed(query: str) -> list[tuple[int, Any]]:
        return [(e["id"], e["roles"]) for e in api.ok("GET", f"/api/escrows{query}")["escrows"]]

    assert listed(f"?arbiter={stranger.lower()}") == [(judged, None)]
    assert listed(f"?arbiter={env.arbiter}") == [
        (self_measured, None), (measured, None), (first, None)
    ]
    assert listed(f"?oracle={stranger}") == [(measured, None)]
    assert listed(f"?oracle={env.oracle}") == [(theirs, None), (judged, None), (first, None)]
    # any role, each item naming the roles the party holds there
    assert listed(f"?party={stranger}") == [
        (theirs, ["client"]), (measured, ["oracle"]), (judged, ["arbiter"])
    ]
    assert listed(f"?party={env.client.lower()}") == [
        (self_measured, ["client", "oracle"]), (measured, ["client"]), (judged, ["client"]),
        (first, ["client"]),
    ]
    assert listed(f"?party={env.provider}&status=active") == [(first, ["provider"])]
    assert listed(f"?party={stranger}&arbiter={env.arbiter}") == [(measured, ["oracle"])]
    assert listed(f"?party={env.parties.deployer.address}") == []
    page = api.ok("GET", f"/api/escrows?party={stranger}&limit=2")
    assert (page["total"], page["next_offset"]) == (3, 2)
    for bad in ("arbiter", "oracle", "party"):
        assert api.error("GET", f"/api/escrows?{bad}=0x1234", 400)["error"] == "malformed"


def test_escrow_list_refuses_bad_filters_with_json_errors(api: Api) -> None:
    assert api.error("GET", "/api/escrows?client=0x1234", 400)["error"] == "malformed"
    address = api.env.client
    i = next(i for i, ch in enumerate(address) if i > 1 and ch.isalpha())
    mixed = address[:i] + address[i].swapcase() + address[i + 1 :]  # a broken EIP-55 checksum
    assert api.error("GET", f"/api/escrows?provider={mixed}", 400)["error"] == "malformed"
    body = api.error("GET", "/api/escrows?status=open", 422)
    assert body["error"] == "out_of_range" and "status" in body["detail"]
    assert api.error("GET", "/api/escrows?limit=0", 422)["error"] == "invalid"
    assert api.error("GET", "/api/escrows?limit=201", 422)["error"] == "invalid"


def test_unknown_escrow_is_404_everywhere(api: Api) -> None:
    api.index()
    for escrow_id in (42, 0, -1, 2**64):  # the last would overflow a 64-bit column
        for method, path in [
            ("GET", f"/api/escrows/{escrow_id}"),
            ("GET", f"/api/escrows/{escrow_id}/statement.csv"),
            ("POST", f"/api/escrows/{escrow_id}/tx/accept"),
        ]:
            body = api.error(method, path, 404)
            assert body == {"error": "not_found", "detail": f"unknown escrow {escrow_id}"}


# ------------------------------------------------------------------ prepare


def test_prepared_creation_sent_from_the_client_creates_the_escrow_the_indexer_serves(
    api: Api,
) -> None:
    env = api.env
    body = prepare_body(env)
    prepared = api.ok("POST", "/api/escrows/prepare", json=body)

    expected_hash = "0x" + keccak(canonical_json(TERMS_DOC)).hex()
    assert prepared["terms_hash"] == expected_hash
    assert prepared["total"] == str(3 * ETH)
    assert prepared["approve"] is None
    assert prepared["params"]["provider"] == env.provider  # lower case in, EIP-55 out
    assert prepared["params"]["termsHash"] == expected_hash
    assert prepared["params"]["terms"]["deliveryDeadline"] == body["rules"]["delivery_deadline"]
    assert prepared["tx"]["to"] == env.escrow.address
    assert prepared["tx"]["value"] == hex(3 * ETH)
    assert set(prepared["tx"]) == {"to", "data", "value"}

    before = env.escrow.escrow_count()
    api.send(env.client, prepared["tx"])
    escrow_id = before + 1
    api.index()

    detail = api.ok("GET", f"/api/escrows/{escrow_id}")
    assert detail["params"] == prepared["params"]
    assert detail["status"] == "proposed"
    assert detail["terms_document"] == TERMS_DOC
    assert detail["balances"]["locked"] == str(3 * ETH)
    assert api.ok("GET", f"/api/terms/{expected_hash}") == TERMS_DOC


def test_prepared_erc20_creation_works_after_the_returned_approve(api: Api) -> None:
    env = api.env
    env.contract("TestToken", env.token).functions.mint(env.client, 7_000_000).transact(
        {"from": env.parties.deployer.address}
    )
    terms_hash = api.ok("POST", "/api/terms", 201, json=TERMS_DOC)["terms_hash"]
    body = prepare_body(env, token=env.token, milestone_amounts=["3000000", 4_000_000],
                        terms_document=None, terms_hash=terms_hash.upper().replace("0X", "0x"))
    prepared = api.ok("POST", "/api/escrows/prepare", json=body)
    assert prepared["tx"]["value"] == "0x0"
    assert prepared["approve"]["to"] == env.token
    assert prepared["terms_hash"] == terms_hash

    api.send(env.client, prepared["approve"])
    api.send(env.client, prepared["tx"])
    api.index()
    [item] = api.ok("GET", "/api/escrows")["escrows"]
    assert item["token"] == {"address": env.token, "symbol": "TUSD", "decimals": 6}
    assert item["total"] == "7000000"
    assert env.balance(env.escrow.address, env.token) == 7_000_000


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    target = out
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return out


_DELETE = object()


def test_prepare_refuses_what_the_contract_would_refuse_naming_the_field(api: Api) -> None:
    env = api.env
    body = prepare_body(env)
    payouts = list(PAYOUTS)
    cases: list[tuple[str, Any, int, str]] = [
        ("milestone_amounts", [], 422, "milestone_amounts"),
        ("milestone_amounts", ["1"] * 65, 422, "milestone_amounts"),
        ("milestone_amounts", ["1", "0"], 422, "milestone_amounts[1]"),
        ("milestone_amounts", [str(2**111), str(2**111)], 422, "total"),
        ("milestone_amounts", ["1.5"], 400, "milestone_amounts[0]"),
        ("milestone_amounts", ["-3"], 422, "milestone_amounts[0]"),
        ("milestone_amounts", [str(2**256)], 422, "milestone_amounts[0]"),
        ("rules.rating_payout_bps", [*payouts[:2], 3_000, *payouts[3:]], 422,
         "rating_payout_bps[2]"),
        ("rules.rating_payout_bps", [0, 0, 0, 0, 9_999], 422, "rating_payout_bps[4]"),
        ("rules.rating_payout_bps", [0, 0, 0, 10_000], 422, "rating_payout_bps"),
        ("rules.rating_payout_bps", [0, 0, 0, 20_000, 10_000], 422, "rating_payout_bps[3]"),
        ("rules.breach_refund_bps", 10_001, 422, "breach_refund_bps"),
        ("rules.max_refund_bps", 10_001, 422, "max_refund_bps"),
        ("rules.incident_refund_bps", -1, 422, "incident_refund_bps"),
        ("rules.review_period", 0, 422, "review_period"),
        ("rules.challenge_period", 0, 422, "challenge_period"),
        ("rules.arbitration_period", 0, 422, "arbitration_period"),
        ("rules.review_period", 2**32, 422, "review_period"),
        ("rules.delivery_deadline", env.now() - 1, 422, "delivery_deadline"),
        ("provider", env.client, 422, "provider"),
        ("provider", ZERO_ADDRESS, 422, "provider"),
        ("client", "0xnot-an-address", 400, "client"),
        ("oracle", "0x1234", 400, "oracle"),
        ("arbiter", "nope", 400, "arbiter"),
        ("token", env.parties.stranger.address, 422, "token"),
        ("terms_document", None, 422, "terms_hash"),
        ("terms_document", {"n": 2**60}, 422, "terms document"),
        ("terms_hash", "0x" + "ab" * 32, 422, "terms_hash"),
        ("terms_hash", "0x12", 400, "terms_hash"),
        ("rules.surprise", 1, 422, "surprise"),
    ]
    for path, value, status, field in cases:
        response = api.http.post("/api/escrows/prepare", json=_set(body, path, value))
        assert response.status_code == status, (path, value, response.text)
        error = response.json()
        assert set(error) == {"error", "detail"}
        assert field in error["detail"], (path, value, error)
    # without an arbiter a zero arbitration period is fine, as on-chain
    no_arbiter = _set(_set(body, "rules.arbitration_period", 0), "arbiter", _DELETE)
    assert api.ok("POST", "/api/escrows/prepare", json=no_arbiter)["params"]["arbiter"] == (
        ZERO_ADDRESS
    )
    # nothing reached the chain
    assert env.escrow.escrow_count() == 0


def test_prepare_answers_503_when_the_node_does_not(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    request = prepare_body(api.env)
    monkeypatch.setattr(api.services.w3.eth, "get_block", down)
    body = api.error("POST", "/api/escrows/prepare", 503, json=request)
    assert body["error"] == "unavailable"
    assert "connection refused" in body["detail"]


def test_prepare_with_an_unknown_terms_hash_is_404(api: Api) -> None:
    body = prepare_body(api.env, terms_document=None, terms_hash="0x" + "cd" * 32)
    body_err = api.error("POST", "/api/escrows/prepare", 404, json=body)
    assert body_err == {"error": "not_found", "detail": f"unknown terms document 0x{'cd' * 32}"}


def test_prepare_accepts_camel_case_rules_pasted_from_params(api: Api) -> None:
    env = api.env
    first = api.ok("POST", "/api/escrows/prepare", json=prepare_body(env))
    body = prepare_body(env, rules=first["params"]["terms"])
    body["milestoneAmounts"] = body.pop("milestone_amounts")
    assert api.ok("POST", "/api/escrows/prepare", json=body)["tx"] == first["tx"]


# ------------------------------------------------------------------ tx/{action}


def test_action_txs_carry_the_indexed_params_and_settle_on_chain(api: Api) -> None:
    env = api.env
    escrow_id = env.create(env.params((ETH, 2 * ETH)))
    api.index()
    p = env.escrow.params(escrow_id)

    accept = api.ok("POST", f"/api/escrows/{escrow_id}/tx/accept")
    assert accept == {
        "to": env.escrow.address,
        "data": env.escrow.contract.functions.accept(escrow_id, p.to_abi())
        ._encode_transaction_data(),
        "value": "0x0",
    }
    api.send(env.provider, accept)
    deliver = api.ok("POST", f"/api/escrows/{escrow_id}/tx/deliver",
                     json={"milestone": 1, "deliveryHash": "0x" + "AB" * 32})
    api.send(env.provider, deliver)
    confirm = api.ok("POST", f"/api/escrows/{escrow_id}/tx/confirm",
                     json={"milestone": "1", "rating": 3, "comment_hash": "0x" + "cd" * 32})
    api.send(env.client, confirm)
    api.index()

    detail = api.ok("GET", f"/api/escrows/{escrow_id}")
    m = detail["milestones"][1]
    assert (m["state"], m["how"], m["rating"]) == ("settled", "confirmed", 3)
    assert (m["delivery_hash"], m["comment_hash"]) == ("0x" + "ab" * 32, "0x" + "cd" * 32)
    assert m["to_provider"] == str(2 * ETH * 6_000 // 10_000)
    assert env.escrow.credits(env.provider) == 2 * ETH * 6_000 // 10_000

    # breach actions: the oracle reports, the provider challenges through the API
    env.escrow.report_breach(escrow_id, 3, 1, b"\x55" * 32, env.oracle)
    api.index()
    challenge = api.ok("POST", f"/api/escrows/{escrow_id}/tx/challenge", json={"breachId": 0})
    api.send(env.provider, challenge)
    resolve = api.ok("POST", f"/api/escrows/{escrow_id}/tx/resolve-breach",
                     json={"breachId": 0, "upheld": True})
    api.send(env.arbiter, resolve)
    api.index()
    breach = api.ok("GET", f"/api/escrows/{escrow_id}")["breaches"][0]
    assert (breach["state"], breach["outcome"]) == ("upheld", "upheld")


def test_action_tx_refuses_unknown_actions_and_bad_arguments_before_the_chain(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    api.index()
    base = f"/api/escrows/{escrow_id}/tx"
    cases: list[tuple[str, Any, int, str, str]] = [
        ("withdraw", None, 404, "not_found", "unknown action 'withdraw'"),
        ("deliver", None, 422, "missing_argument", "milestone is required"),
        ("deliver", {"milestone": 2}, 404, "not_found",
         f"unknown milestone 2 of escrow {escrow_id}"),
        ("deliver", {"milestone": -1}, 404, "not_found", "unknown milestone -1"),
        ("deliver", {"milestone": True}, 422, "out_of_range", "milestone=True"),
        ("deliver", {"milestone": 0, "deliveryHash": "0x12"}, 422, "out_of_range", "deliveryHash"),
        ("confirm", {"milestone": 0}, 422, "missing_argument", "rating is required"),
        ("confirm", {"milestone": 0, "rating": 6}, 422, "out_of_range", "rating=6"),
        ("confirm", {"milestone": 0, "rating": 0}, 422, "out_of_range", "rating=0"),
        ("confirm", {"milestone": 0, "rating": 5, "deadline": 1}, 422, "out_of_range",
         "deadline"),
        ("challenge", {"breachId": 0}, 404, "not_found", f"unknown breach 0 of escrow {escrow_id}"),
        ("resolve-breach", {"breachId": 0, "upheld": "yes"}, 404, "not_found", "breach"),
        ("resolve-dispute", {"milestone": 0, "providerBps": 10_001}, 422, "out_of_range",
         "providerBps"),
        ("accept", {"milestone": 0}, 422, "out_of_range", "milestone"),
    ]
    for action, body, status, code, detail in cases:
        kwargs = {} if body is None else {"json": body}
        error = api.error("POST", f"{base}/{action}", status, **kwargs)
        assert error["error"] == code, (action, body, error)
        assert detail in error["detail"], (action, body, error)
    assert api.error("POST", f"{base}/deliver", 400, content=b"{nope",
                     headers={"content-type": "application/json"})["error"] == "malformed"
    assert api.error("POST", f"{base}/deliver", 422, json=[1, 2])["error"] == "invalid"


# ------------------------------------------------------------------ statement


def test_statement_csv_lists_every_money_movement_with_token_decimals(api: Api) -> None:
    env = api.env
    params = env.params((1_000_000, 2_000_000), token=env.token)
    escrow_id = env.create_active(params)
    confirmed = env.escrow.confirm(escrow_id, 0, 4, None, env.client)
    breach_id, reported = env.escrow.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)
    env.advance(CHALLENGE + 1)
    finalized = env.escrow.finalize_breach(escrow_id, breach_id, env.parties.relayer.address)
    api.index()

    response = api.http.get(f"/api/escrows/{escrow_id}/statement.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    chain_id = env.escrow.chain_id
    assert response.headers["content-disposition"] == (
        f'attachment; filename="escrow-{chain_id}-{escrow_id}-statement.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    reserve = 3_000_000 * 500 // 10_000
    summary = [
        (r["movement"], r["milestone"], r["breach"], r["account"], r["counterparty"], r["token"],
         r["amount"], r["amount_base_units"], r["tx_hash"])
        for r in rows
    ]
    client, provider = env.client, env.provider
    assert summary == [
        ("deposit", "", "", "escrow", client, "TUSD", "3.000000", "3000000",
         rows[0]["tx_hash"]),
        ("release", "0", "", provider, client, "TUSD", "0.800000", "800000",
         _hex(confirmed.tx_hash)),
        ("refund", "0", "", client, provider, "TUSD", "0.200000", "200000",
         _hex(confirmed.tx_hash)),
        ("reserve", "", "0", "escrow", client, "TUSD", "0.150000", str(reserve),
         _hex(reported.tx_hash)),
        ("breach_refund", "", "0", client, provider, "TUSD", "0.150000", str(reserve),
         _hex(finalized.tx_hash)),
    ]
    finalized_block = env.w3.eth.get_block(finalized.block_number)
    assert rows[-1]["time"] == str(finalized_block["timestamp"])
    assert rows[-1]["block"] == str(finalized.block_number)
    assert rows[-1]["escrow"] == str(escrow_id)
    assert rows[-1]["token_address"] == env.token
    assert rows[0]["time_utc"].endswith("Z")


# ------------------------------------------------------------------ the whole flow, for real


@pytest.mark.hardhat
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_wallet_flow_on_hardhat_and_postgres_ends_in_the_providers_credit(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    with api_on(env, database_url, tmp_path) as api:
        prepared = api.ok("POST", "/api/escrows/prepare",
                          json=prepare_body(env, milestone_amounts=[str(ETH)]))
        before = env.escrow.escrow_count()
        api.send(env.client, prepared["tx"])
        escrow_id = before + 1
        api.index()
        assert api.ok("GET", f"/api/escrows/{escrow_id}")["status"] == "proposed"
        assert api.ok("GET", f"/api/accounts/{env.provider}/credits")["credits"] == []

        tx = f"/api/escrows/{escrow_id}/tx"
        api.send(env.provider, api.ok("POST", f"{tx}/accept"))
        api.send(env.provider, api.ok("POST", f"{tx}/deliver", json={"milestone": 0}))
        api.send(env.client, api.ok("POST", f"{tx}/confirm", json={"milestone": 0, "rating": 4}))
        api.index()

        credits = api.ok("GET", f"/api/accounts/{env.provider.lower()}/credits")
        assert credits == {
            "account": env.provider,
            "credits": [
                {"token": ZERO_ADDRESS, "symbol": "ETH", "decimals": 18,
                 "amount": str(ETH * 8_000 // 10_000)},
            ],
        }
        detail = api.ok("GET", f"/api/escrows/{escrow_id}")
        assert detail["status"] == "closed"
        assert detail["milestones"][0]["rating"] == 4
        assert json.loads(json.dumps(detail["terms_document"])) == TERMS_DOC



# ------------------------------------------------------------------ detail cache


def _detail_cache(api: Api) -> DetailCache:
    cache: DetailCache = api.app.state.escrow_detail_cache
    return cache


def test_detail_is_served_from_cache_until_the_indexer_moves(api: Api) -> None:
    env = api.env
    terms_hash = api.ok("POST", "/api/terms", 201, json=TERMS_DOC)["terms_hash"]
    escrow_id = env.create_active(env.params(terms_hash=terms_hash))
    api.index()
    first = api.http.get(f"/api/escrows/{escrow_id}")
    assert len(_detail_cache(api)) == 1
    # while the cursor stands still, the database's events are not read again
    with api.services.engine.begin() as conn:
        conn.execute(delete(EventLog).where(EventLog.event == "EscrowAccepted"))
    assert api.http.get(f"/api/escrows/{escrow_id}").content == first.content
    assert first.json()["status"] == "active"

    # the indexer moving on (here: one more block) makes the next request fold again
    env.deliver(escrow_id, 0)
    api.index()
    again = api.ok("GET", f"/api/escrows/{escrow_id}")
    assert again["status"] == "proposed"  # the deleted row is gone from the fold now
    assert again["milestones"][0]["state"] == "delivered"


def test_a_reorg_that_changes_the_cursor_hash_invalidates_the_cached_detail(api: Api) -> None:
    env = api.env
    terms_hash = api.ok("POST", "/api/terms", 201, json=TERMS_DOC)["terms_hash"]
    escrow_id = env.create_active(env.params(terms_hash=terms_hash))
    api.index()
    assert api.ok("GET", f"/api/escrows/{escrow_id}")["status"] == "active"
    with api.services.engine.begin() as conn:  # the same height, another block: a reorg
        conn.execute(delete(EventLog).where(EventLog.event == "EscrowAccepted"))
        conn.execute(update(ChainCursor).values(block_hash="0x" + "ee" * 32))
    assert api.ok("GET", f"/api/escrows/{escrow_id}")["status"] == "proposed"


def test_documents_stored_after_the_first_request_still_show_up(api: Api) -> None:
    env = api.env
    terms_hash = "0x" + keccak(canonical_json(TERMS_DOC)).hex()
    review = {"comment": "late", "attachments": []}
    comment_hash = "0x" + keccak(canonical_json(review)).hex()
    escrow_id = env.create_active(env.params(terms_hash=terms_hash))
    env.escrow.confirm(escrow_id, 0, 5, comment_hash, env.client)
    api.index()
    body = api.ok("GET", f"/api/escrows/{escrow_id}")
    assert (body["terms_document"], body["milestones"][0]["review"]) == (None, None)
    assert len(_detail_cache(api)) == 0  # incomplete bodies are not kept

    api.ok("POST", "/api/terms", 201, json=TERMS_DOC)
    assert api.ok("GET", f"/api/escrows/{escrow_id}")["terms_document"] == TERMS_DOC
    assert len(_detail_cache(api)) == 0  # the review is still missing
    with api.services.sessions() as session, session.begin():
        session.add(Review(comment_hash=comment_hash, canonical=canonical_json(review).decode(),
                           created_at=int(time.time())))
    assert api.ok("GET", f"/api/escrows/{escrow_id}")["milestones"][0]["review"] == review
    assert len(_detail_cache(api)) == 1


def test_the_detail_cache_is_bounded_and_keyed_by_cursor() -> None:
    cache = DetailCache(2)
    cache.put(1, (5, "0xa"), b"one")
    cache.put(2, (5, "0xa"), b"two")
    assert cache.get(1, (5, "0xa")) == b"one"  # 1 is now the most recent
    cache.put(3, (5, "0xa"), b"three")
    assert cache.get(2, (5, "0xa")) is None  # least recently used, dropped
    assert cache.get(1, (5, "0xb")) is None  # another cursor: not this body
    assert cache.get(3, (5, "0xa")) == b"three"
    off = DetailCache(0)
    off.put(1, (5, "0xa"), b"one")
    assert len(off) == 0


# ------------------------------------------------------------------ one terms model, one parser


def _not_stored(api: Api, document: dict[str, Any]) -> bool:
    terms_hash = "0x" + keccak(canonical_json(document)).hex()
    return api.http.get(f"/api/terms/{terms_hash}").status_code == 404


def test_prepare_refuses_terms_without_kpis_naming_the_field(api: Api) -> None:
    document = {k: v for k, v in TERMS_DOC.items() if k != "kpis"}
    body = api.error("POST", "/api/escrows/prepare", 422,
                     json=prepare_body(api.env, terms_document=document))
    assert body == {"error": "out_of_range",
                    "detail": "invalid terms document: terms_document.kpis: Field required"}
    empty = api.error("POST", "/api/escrows/prepare", 422,
                      json=prepare_body(api.env, terms_document={**TERMS_DOC, "kpis": []}))
    assert "terms_document.kpis: List should have at least 1 item" in empty["detail"]
    assert _not_stored(api, document) and _not_stored(api, {**TERMS_DOC, "kpis": []})


def test_prepare_refuses_terms_with_an_unknown_aggregate_naming_the_field(api: Api) -> None:
    kpi = {"id": "uptime_pct", "aggregate": "average", "op": ">=", "threshold": 99.9}
    document = {**TERMS_DOC, "kpis": [kpi]}
    body = api.error("POST", "/api/escrows/prepare", 422,
                     json=prepare_body(api.env, terms_document=document))
    assert body["error"] == "out_of_range"
    assert body["detail"].startswith(
        "invalid terms document: terms_document.kpis.0.aggregate: Input should be 'mean'"
    )
    assert _not_stored(api, document)
    assert api.env.escrow.escrow_count() == 0


_KPI = {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}
AGREEMENT_TABLE: dict[str, dict[str, Any]] = {
    "minimal": dict(TERMS_DOC),
    "every option": {**TERMS_DOC, "consecutive_periods": 2, "missing_data": "breach",
                     "grace_seconds": 0, "acceptance_criteria": ["ok"],
                     "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">",
                                  "threshold": 60}},
    "extra keys": {**TERMS_DOC, "currency_note": "EUR", "kpis": [{**_KPI, "unit": "%"}]},
    "a streak of 1": {**TERMS_DOC, "consecutive_periods": 1},
    "no kpis": {k: v for k, v in TERMS_DOC.items() if k != "kpis"},
    "unknown aggregate": {**TERMS_DOC, "kpis": [{**_KPI, "aggregate": "p42"}]},
    "unknown operator": {**TERMS_DOC, "kpis": [{**_KPI, "op": "=="}]},
    "threshold as text": {**TERMS_DOC, "kpis": [{**_KPI, "threshold": "99.9"}]},
    "period of zero": {**TERMS_DOC, "period_seconds": 0},
    "period as text": {**TERMS_DOC, "period_seconds": "86400"},
    "duplicate kpis": {**TERMS_DOC, "kpis": [_KPI, _KPI]},
    "missing data maybe": {**TERMS_DOC, "missing_data": "maybe"},
    "no version": {k: v for k, v in TERMS_DOC.items() if k != "version"},
    "too deep": {**TERMS_DOC, "note": json.loads("[" * 40 + "]" * 40)},
}


@pytest.mark.parametrize("name", sorted(AGREEMENT_TABLE))
def test_post_terms_and_prepare_accept_and_refuse_the_same_documents(api: Api, name: str) -> None:
    document = AGREEMENT_TABLE[name]
    stored = api.http.post("/api/terms", json=document)
    prepared = api.http.post("/api/escrows/prepare",
                             json=prepare_body(api.env, terms_document=document))
    assert set(stored.json()) in ({"terms_hash"}, {"error", "detail"})
    if stored.status_code == 201:
        assert prepared.status_code == 200, prepared.text
        assert prepared.json()["terms_hash"] == stored.json()["terms_hash"]
    else:
        assert (stored.status_code, prepared.status_code) == (422, 422), prepared.text
        assert prepared.json()["error"] == stored.json()["error"]
        # the same fields at fault, named inside the prepare body
        fields = [part.split(": ")[0] for part in
                  stored.json()["detail"].removeprefix("invalid terms document: ").split("; ")]
        for field in fields:
            assert field.replace("terms document", "terms_document") in prepared.json()["detail"]


def test_amounts_as_json_numbers_above_2_53_or_as_floats_are_refused(api: Api) -> None:
    env = api.env
    too_big = api.error("POST", "/api/escrows/prepare", 422,
                        json=prepare_body(env, milestone_amounts=[str(ETH), 2**53 + 1]))
    assert too_big["error"] == "out_of_range"
    assert too_big["detail"].startswith("milestone_amounts[1]=9007199254740993 is out of range")
    as_float = api.http.post("/api/escrows/prepare", content=json.dumps(
        prepare_body(env, milestone_amounts=["1"])).replace('["1"]', "[1e18]").encode(),
        headers={"content-type": "application/json"})
    assert as_float.status_code == 400, as_float.text
    assert as_float.json()["detail"] == (
        "malformed milestone_amounts[0]: 1e+18 is not a decimal integer string or a JSON integer"
    )
    exact = api.ok("POST", "/api/escrows/prepare",
                   json=prepare_body(env, milestone_amounts=[str(ETH), 2**53 - 1]))
    assert exact["total"] == str(ETH + 2**53 - 1)


def test_prepare_takes_uint_rules_as_decimal_strings_too(api: Api) -> None:
    env = api.env
    rules = {k: (str(v) if isinstance(v, int) else [str(x) for x in v])
             for k, v in rules_json(env).items()}
    as_text = api.ok("POST", "/api/escrows/prepare", json=prepare_body(env, rules=rules))
    as_numbers = api.ok("POST", "/api/escrows/prepare", json=prepare_body(env))
    assert as_text["tx"] == as_numbers["tx"]
    body = api.error("POST", "/api/escrows/prepare", 400,
                     json=prepare_body(env, rules={**rules, "review_period": 1.5}))
    assert body["detail"].startswith("malformed rules.review_period: 1.5 is not")
