"""`backend.client.wallet`: a local key sends the service's ready transactions (reverts decoded
by name, with their values) and signs its typed data; `load_signer` finds keystores by name or
path, and development keys by role name on chain 31337 only."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account

from backend.chain.errors import ContractRevert
from backend.chain.keys import KeystoreError
from backend.client import DEV_ROLES, ServiceClient, Wallet, load_signer
from backend.client.wallet import keystore_path
from backend.config import Settings
from backend.errors import ConfigurationError
from tests.support import ETH, EscrowEnv
from tests.web.support import LiveService

TERMS = {"version": 1, "title": "Hosting", "period_seconds": 86400,
         "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}]}


def _prepare(env: EscrowEnv, service: ServiceClient) -> dict[str, Any]:
    return dict(service.post_json("/api/escrows/prepare", {
        "client": env.client, "provider": env.provider, "oracle": env.oracle,
        "arbiter": env.arbiter, "milestone_amounts": [str(ETH)], "terms_document": TERMS,
        "rules": {"rating_payout_bps": [0, 2500, 5000, 7500, 10000], "breach_refund_bps": 500,
                  "streak_refund_bps": 1000, "incident_refund_bps": 2000,
                  "max_refund_bps": 3000, "review_period": 86400, "challenge_period": 86400,
                  "arbitration_period": 86400, "delivery_deadline": env.now() + 30 * 86400},
    }))


def test_the_prepared_creation_sent_by_the_wallet_creates_the_escrow(
    service: ServiceClient, live_service: LiveService
) -> None:
    env = live_service.env
    wallet = Wallet(env.w3, env.parties.client)
    before = env.balance(env.client)

    sent = wallet.send(_prepare(env, service)["tx"])

    report = service.wait_for_tx(sent.tx_hash)
    assert report["status"] == "mined" and sent.status == 1
    assert report["block_number"] == sent.block_number
    (escrow_id,) = report["escrow_ids"]
    detail = service.wait_for_escrow(escrow_id)
    assert detail["balances"]["total"] == str(ETH)
    receipt = env.w3.eth.get_transaction_receipt(sent.tx_hash)  # type: ignore[arg-type]
    assert sent.gas_used == receipt["gasUsed"]
    assert before - env.balance(env.client) == ETH + sent.gas_used * receipt["effectiveGasPrice"]


def test_a_transaction_the_contract_refuses_raises_its_custom_error_with_values(
    service: ServiceClient, live_service: LiveService
) -> None:
    env = live_service.env
    escrow_id = env.create()
    service.wait_for_escrow(escrow_id)
    tx = service.post_json(f"/api/escrows/{escrow_id}/tx/accept")
    nonce = env.w3.eth.get_transaction_count(env.client)

    with pytest.raises(ContractRevert) as caught:
        Wallet(env.w3, env.parties.client).send(tx)  # only the provider accepts

    assert caught.value.error_name == "EscrowUnauthorizedCaller"
    assert caught.value.message == (
        f"EscrowUnauthorizedCaller(caller={env.client}, required={env.provider})"
    )
    assert env.w3.eth.get_transaction_count(env.client) == nonce  # nothing was broadcast


def test_typed_data_signed_by_the_wallet_settles_the_milestone_through_the_relayer(
    service: ServiceClient, live_service: LiveService
) -> None:
    env = live_service.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.deliver(escrow_id, 0)
    service.wait_for_escrow(escrow_id, lambda d: d["milestones"][0]["state"] == "delivered")
    path = f"/api/escrows/{escrow_id}/milestones/0"
    prepared = service.post_json(f"{path}/typed-data", {"rating": 4, "comment": "good"})

    signature = Wallet(env.w3, env.parties.client).sign_typed_data(prepared["typed_data"])
    queued = service.post_json(f"{path}/confirmations", {
        "rating": 4, "comment": "good", "deadline": prepared["typed_data"]["message"]["deadline"],
        "signature": signature,
    })

    assert service.wait_for_confirmation(queued["id"], timeout=20)["status"] == "mined"
    detail = service.wait_for_escrow(
        escrow_id, lambda d: d["milestones"][0]["state"] == "settled", timeout=10)
    assert detail["milestones"][0]["to_provider"] == prepared["payout"]["to_provider"]


# ---------------------------------------------------------------------- load_signer


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def _keystore(settings: Settings, name: str, password: str) -> Any:
    account = Account.create()
    path = keystore_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(Account.encrypt(account.key, password, iterations=2)))
    return account


class _FakeChain:
    """A `Web3` stand-in whose node says chain id 1 (no dev chain)."""

    def __init__(self, chain_id: int) -> None:
        self.eth = SimpleNamespace(chain_id=chain_id)
        self.provider = object()


def test_a_keystore_is_found_by_name_and_by_path(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    account = _keystore(settings, "alice", "pw")
    chain: Any = _FakeChain(1)
    assert load_signer(chain, settings, "alice", "pw").address == account.address
    path = str(keystore_path(settings, "alice"))
    assert load_signer(chain, settings, path, "pw").address == account.address


def test_a_wrong_password_is_refused_naming_the_keystore(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _keystore(settings, "alice", "pw")
    with pytest.raises(KeystoreError) as caught:
        load_signer(_FakeChain(1), settings, "alice", "nope")  # type: ignore[arg-type]
    assert caught.value.message.endswith("alice.json: wrong password or corrupt file")


def test_a_dev_role_name_is_refused_off_the_development_chain(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_signer(_FakeChain(1), _settings(tmp_path), "client")  # type: ignore[arg-type]
    assert caught.value.message.startswith(
        "--from client: development accounts by role name are accepted only on chain id 31337, "
        "this is chain 1;"
    )


def test_an_unknown_name_is_refused_naming_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_signer(_FakeChain(1), _settings(tmp_path), "bob")  # type: ignore[arg-type]
    assert "no keystore 'bob'" in caught.value.message
    assert "escrow keys list" in caught.value.message


def test_dev_role_names_are_hardhats_accounts_on_chain_31337(
    hardhat_env: EscrowEnv, tmp_path: Path
) -> None:
    for role, index in DEV_ROLES.items():
        account = load_signer(hardhat_env.w3, _settings(tmp_path), role)
        assert account.address == getattr(hardhat_env.parties, role).address, (role, index)
