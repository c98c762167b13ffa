"""`GET /api/accounts/{address}/credits`: withdrawable amounts per token, read from the contract
for every token the index shows the account was credited in."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from backend.chain.types import ZERO_ADDRESS
from tests.api.support import Api
from tests.support import ETH, EscrowEnv


def eth(amount: int) -> dict[str, object]:
    return {"token": ZERO_ADDRESS, "symbol": "ETH", "decimals": 18, "amount": str(amount)}


def tusd(env: EscrowEnv, amount: int) -> dict[str, object]:
    return {"token": env.token, "symbol": "TUSD", "decimals": 6, "amount": str(amount)}


def test_credits_list_each_token_with_the_contracts_amount(api: Api) -> None:
    env = api.env
    eth_escrow = env.create_active(env.params((ETH, 2 * ETH)))
    env.escrow.confirm(eth_escrow, 0, 4, None, env.client)
    token_escrow = env.create_active(env.params((1_000_000,), token=env.token))
    env.escrow.confirm(token_escrow, 0, 5, None, env.client)
    api.index()

    provider = api.ok("GET", f"/api/accounts/{env.provider.lower()}/credits")
    assert provider == {
        "account": env.provider,
        "credits": [eth(8 * ETH // 10), tusd(env, 1_000_000)],
    }
    # rating 5 gave the client nothing in TUSD: only ETH is listed for it
    client = api.ok("GET", f"/api/accounts/{env.client}/credits")
    assert client == {"account": env.client, "credits": [eth(2 * ETH // 10)]}


def test_credits_show_zero_after_a_withdrawal_and_nothing_for_the_uncredited(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,)))
    api.index()
    assert api.ok("GET", f"/api/accounts/{env.provider}/credits")["credits"] == []

    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    env.escrow.withdraw(None, env.provider)
    api.index()
    assert api.ok("GET", f"/api/accounts/{env.provider}/credits")["credits"] == [eth(0)]
    assert api.ok("GET", f"/api/accounts/{env.oracle}/credits")["credits"] == []
    assert api.ok("GET", f"/api/accounts/{env.client}/credits")["credits"] == []


def test_a_cancelled_escrow_credits_its_client(api: Api) -> None:
    env = api.env
    escrow_id = env.create(env.params((ETH, ETH)))
    env.escrow.cancel(escrow_id, env.client)
    api.index()
    assert api.ok("GET", f"/api/accounts/{env.client}/credits")["credits"] == [eth(2 * ETH)]
    assert api.ok("GET", f"/api/accounts/{env.provider}/credits")["credits"] == []


def test_credits_answer_503_when_the_node_does_not(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api.env
    env.escrow.confirm(env.create_active(env.params((ETH,))), 0, 5, None, env.client)
    api.index()

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(api.services.escrow, "credits", down)
    body = api.error("GET", f"/api/accounts/{env.provider}/credits", 503)
    assert body == {"error": "unavailable",
                    "detail": "node unavailable: credits: connection refused"}


def test_credits_refuse_a_malformed_address_with_400(api: Api) -> None:
    for bad in ("0x1234", "not-an-address", "0x" + "g" * 40):
        body = api.error("GET", f"/api/accounts/{bad}/credits", 400)
        assert body["error"] == "malformed"
        assert "address" in body["detail"]
