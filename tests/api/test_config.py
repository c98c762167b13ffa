"""`GET /api/config`: the chain, the RPC URL a wallet should add, the contract, the service's own
accounts (addresses, never keys) and the API's limits. Every test runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from pydantic import ValidationError

from backend.api.schemas import ServiceConfig
from backend.chain import devchain
from backend.chain.types import MAX_MILESTONES
from backend.config import Settings
from backend.confirmations.reviews import (
    ALLOWED_MEDIA_TYPES,
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    MAX_COMMENT_CHARS,
)
from tests.api.support import Api, api_on
from tests.support import EscrowEnv

ORACLE_KEY = "0x" + "5a" * 32
PASSWORD = "correct horse"


@pytest.fixture
def configured(env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API with a public RPC URL, a default arbiter given in lower case, the oracle's key in
    a keystore and the relayer's keystore missing."""
    keystore = tmp_path / "oracle.json"
    keystore.write_text(json.dumps(Account.encrypt(ORACLE_KEY, PASSWORD, kdf="pbkdf2",
                                                   iterations=2)))
    settings = {
        "public_rpc_url": "https://rpc.example.org/escrow",
        "default_arbiter": env.arbiter.lower(),
        "oracle_keystore": keystore,
        "oracle_keystore_password": PASSWORD,
        "relayer_keystore": tmp_path / "missing.json",
        "relayer_keystore_password": PASSWORD,
    }
    with api_on(env, database_url, tmp_path / "data", **settings) as api:
        yield api


def test_config_tells_a_wallet_the_chain_the_contract_the_service_accounts_and_the_limits(
    api: Api,
) -> None:
    env = api.env
    body = api.ok("GET", "/api/config")
    dev = devchain.dev_accounts(env.w3, 6)
    assert body == {
        "chain_id": env.escrow.chain_id,
        "rpc_url": api.services.settings.rpc_url,  # ESCROW_RPC_URL: no public URL is set
        "contract": env.escrow.address,
        "deployment_block": env.deployment_block,
        "oracle": dev[3].address,  # the dev chain's keys of the oracle and the relayer
        "relayer": dev[5].address,
        "arbiter": None,
        "native": {"symbol": "ETH", "decimals": 18},
        "limits": {
            "max_comment_chars": MAX_COMMENT_CHARS,
            "max_criterion_note_chars": 500,
            "max_delivery_note_chars": 2_000,
            "max_dispute_reason_chars": 2_000,
            "max_attachments": MAX_ATTACHMENTS,
            "max_attachment_bytes": MAX_ATTACHMENT_BYTES,
            "attachment_media_types": list(ALLOWED_MEDIA_TYPES),
            "max_milestones": MAX_MILESTONES,
            "max_terms_bytes": 64 * 1024,
            "default_deadline_seconds": 3_600,
        },
    }
    ServiceConfig.model_validate(body)
    # no key of the service's accounts is part of it, in any form
    text = json.dumps(body).lower()
    for account in (dev[3], dev[5]):
        assert bytes(account.key).hex() not in text


def test_config_takes_the_public_rpc_url_and_arbiter_from_settings_and_shows_no_key(
    configured: Api,
) -> None:
    body = configured.ok("GET", "/api/config")
    assert body["rpc_url"] == "https://rpc.example.org/escrow"
    assert body["arbiter"] == configured.env.arbiter  # EIP-55
    assert body["oracle"] == Account.from_key(ORACLE_KEY).address  # from its keystore
    assert body["relayer"] is None  # its keystore cannot be read: no relayer to name
    text = json.dumps(body).lower()
    assert ORACLE_KEY[2:] not in text and PASSWORD not in text and "keystore" not in text


def test_a_default_arbiter_that_is_no_address_stops_the_settings_from_loading() -> None:
    with pytest.raises(ValidationError, match="default_arbiter"):
        Settings(default_arbiter="0x1234")
    assert Settings(default_arbiter="").default_arbiter is None
    assert Settings().wallet_rpc_url == Settings().rpc_url


def test_the_service_accounts_are_derived_once_per_app(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = api.ok("GET", "/api/config")

    def never(*_args: Any) -> Any:
        raise AssertionError("the accounts were derived again")

    monkeypatch.setattr("backend.escrows.wallet_config.oracle_account", never)
    monkeypatch.setattr("backend.escrows.wallet_config.relayer_account", never)
    assert api.ok("GET", "/api/config") == first
