"""`/api/tx`: a transaction as the node knows it (pending, mined or reverted with its decoded
custom error) with the escrow contract's events of its receipt, so a wallet learns the id of the
escrow it created; and the ready `withdraw(token)` of a credit. Every test runs on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from backend.api.schemas import TransactionReport
from backend.chain.types import ZERO_ADDRESS
from tests.api.support import Api, api_on
from tests.outbox.support import manual_mining, mine
from tests.support import ETH, PAYOUTS, EscrowEnv


def test_a_creation_names_the_escrow_it_created_and_leaves_the_tokens_logs_out(api: Api) -> None:
    env = api.env
    params = env.params((1_500_000, 2_500_000), token=env.token)
    env.fund_token(env.token, env.client, params.total)
    escrow_id, created = env.escrow.create_escrow(params, env.client)
    receipt = env.w3.eth.get_transaction_receipt(created.tx_hash)  # type: ignore[arg-type]
    assert len(receipt["logs"]) == 2  # the token's Transfer, then EscrowCreated

    body = api.ok("GET", f"/api/tx/{created.tx_hash.upper().replace('0X', '0x')}")

    assert body == {
        "tx_hash": created.tx_hash,
        "status": "mined",
        "block_number": created.block_number,
        "from": env.client,
        "to": env.escrow.address,
        "escrow_ids": [escrow_id],
        "events": [{
            "event": "EscrowCreated",
            "escrow_id": escrow_id,
            "args": {"escrowId": str(escrow_id), "client": env.client, "provider": env.provider,
                     "params": params.to_json()},
        }],
        "error": None,
    }
    TransactionReport.model_validate(body)


def test_the_withdraw_transaction_pays_the_credit_and_reads_back_as_withdrawn(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.escrow.confirm(escrow_id, 0, 4, None, env.client)
    credit = ETH * PAYOUTS[3] // 10_000
    assert env.escrow.credits(env.provider) == credit

    tx = api.ok("POST", "/api/tx/withdraw", json={"token": ZERO_ADDRESS})
    assert tx == {
        "to": env.escrow.address,
        "data": env.escrow.contract.encode_abi("withdraw", args=[ZERO_ADDRESS]),
        "value": "0x0",
    }
    before = env.w3.eth.get_balance(env.provider)
    receipt = api.send(env.provider, tx)
    gas = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert env.w3.eth.get_balance(env.provider) == before + credit - gas
    assert env.escrow.credits(env.provider) == 0

    body = api.ok("GET", f"/api/tx/{Web3.to_hex(receipt['transactionHash'])}")
    assert (body["status"], body["from"], body["escrow_ids"]) == ("mined", env.provider, [])
    assert body["events"] == [{
        "event": "Withdrawn", "escrow_id": None,
        "args": {"account": env.provider, "token": ZERO_ADDRESS, "amount": str(credit)},
    }]


def test_a_token_withdrawal_takes_the_address_in_any_valid_case(api: Api) -> None:
    env = api.env
    tx = api.ok("POST", "/api/tx/withdraw", json={"token": env.token.lower()})
    assert tx["data"] == env.escrow.contract.encode_abi("withdraw", args=[env.token])


def test_a_transaction_to_another_address_has_no_escrow_events(api: Api) -> None:
    env = api.env
    tx_hash = env.w3.eth.send_transaction(
        {"from": env.client, "to": env.parties.stranger.address, "value": 1}
    )
    env.w3.eth.wait_for_transaction_receipt(tx_hash)
    body = api.ok("GET", f"/api/tx/{Web3.to_hex(tx_hash)}")
    assert (body["status"], body["to"], body["escrow_ids"], body["events"], body["error"]) == (
        "mined", env.parties.stranger.address, [], [], None
    )


def test_tx_refuses_a_malformed_hash_and_answers_404_for_one_the_node_does_not_know(
    api: Api,
) -> None:
    for bad in ("0x12", "ab" * 32, "0x" + "zz" * 32):
        body = api.error("GET", f"/api/tx/{bad}", 400)
        assert body["error"] == "malformed" and "tx_hash" in body["detail"]
    unknown = "0x" + "ab" * 32
    assert api.error("GET", f"/api/tx/{unknown}", 404) == {
        "error": "not_found", "detail": f"unknown transaction {unknown}"
    }


@pytest.mark.parametrize(
    ("body", "status", "code", "detail"),
    [
        (None, 422, "missing_argument", "token is required"),
        ({}, 422, "missing_argument", "token is required"),
        ({"token": "0x1234"}, 422, "out_of_range", "token="),
        ({"token": 5}, 422, "out_of_range", "token="),
        ({"token": ZERO_ADDRESS, "amount": "1"}, 422, "out_of_range", "amount="),
        ([ZERO_ADDRESS], 422, "invalid", "body"),
    ],
    ids=["no-body", "empty", "short-address", "number", "unknown-argument", "a-list"],
)
def test_withdraw_refuses_a_missing_or_malformed_token_with_422(
    api: Api, body: Any, status: int, code: str, detail: str
) -> None:
    kwargs = {} if body is None else {"json": body}
    refused = api.error("POST", "/api/tx/withdraw", status, **kwargs)
    assert refused["error"] == code, refused
    assert detail in refused["detail"], refused


@pytest.mark.hardhat
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_transaction_is_pending_until_mined_and_a_revert_is_named_in_words(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    with api_on(env, database_url, tmp_path) as api:
        escrow_id = env.create()
        api.index()
        accept = api.ok("POST", f"/api/escrows/{escrow_id}/tx/accept")
        stranger = env.parties.stranger.address
        with manual_mining(env):  # the node takes it without simulating it; a block mines it
            tx_hash = Web3.to_hex(env.w3.eth.send_transaction({
                "from": stranger, "to": accept["to"], "data": accept["data"], "gas": 300_000,
            }))
            pending = api.ok("GET", f"/api/tx/{tx_hash}")
            assert pending == {
                "tx_hash": tx_hash, "status": "pending", "block_number": None,
                "from": stranger, "to": env.escrow.address, "escrow_ids": [], "events": [],
                "error": None,
            }
            mine(env)
        reverted = api.ok("GET", f"/api/tx/{tx_hash}")
        assert reverted["status"] == "reverted"
        assert reverted["block_number"] == env.w3.eth.block_number
        assert (reverted["escrow_ids"], reverted["events"]) == ([], [])
        assert reverted["error"] == (
            f"EscrowUnauthorizedCaller(caller={stranger}, required={env.provider})"
        )
