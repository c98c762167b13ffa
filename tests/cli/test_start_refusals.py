"""The service refuses to start, in one line naming what is wrong (exit 2, no traceback), rather
than run sick: a configured relayer or oracle key that cannot be loaded (observed: with a wrong
keystore password the relayer and oracle threads died at start-up while `/api/health` said `ok`
and confirmations got 202 and were never sent), and Sign-In with Ethereum without
`ESCROW_SIWE_DOMAIN` off the development chain (the domain would be the request's Host header).
On the in-process chain and SQLite; uvicorn is never started (`uvicorn.run` records instead)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account

from backend.config import Settings
from tests.cli.conftest import Invoke
from tests.support import EscrowEnv


@pytest.fixture
def cli_settings(env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The commands on the in-process chain's escrow and a SQLite file under tmp_path."""
    configured = Settings(
        data_dir=tmp_path / "cli", contract_address=env.escrow.address,
        database_url=f"sqlite:///{tmp_path / 'escrow.db'}",
    )
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    monkeypatch.setattr("backend.services.connect", lambda _url, **_kw: env.w3)
    return configured


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What `uvicorn.run` was asked to serve (nothing is served)."""
    apps: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **_kw: apps.append(app))
    return apps


def keystore(tmp_path: Path, name: str, password: str) -> Path:
    """A keystore of a fresh key, encrypted with `password` (a small pbkdf2 work factor)."""
    path = tmp_path / f"{name}.json"
    encrypted = Account.encrypt(Account.create().key, password, kdf="pbkdf2", iterations=16)
    path.write_text(json.dumps(encrypted))
    return path


def test_serve_refuses_a_relayer_keystore_with_a_wrong_password_in_one_line(
    refused: Callable[..., str], cli_settings: Settings, served: list[Any], tmp_path: Path
) -> None:
    path = keystore(tmp_path, "relayer", "right")
    cli_settings.relayer_keystore = path
    cli_settings.relayer_keystore_password = "wrong"
    expected = (
        f"error: ESCROW_RELAYER_KEYSTORE: cannot use keystore {path}: wrong password "
        "(ESCROW_RELAYER_KEYSTORE_PASSWORD) or corrupt file"
    )
    assert refused("serve") == expected
    assert refused("serve", "--no-workers") == expected
    assert refused("relay") == expected
    assert refused("relay", "--once") == expected
    assert served == []


def test_serve_refuses_a_missing_oracle_keystore_and_one_without_password(
    refused: Callable[..., str], cli_settings: Settings, served: list[Any], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "oracle.json"
    cli_settings.oracle_keystore = missing
    cli_settings.oracle_keystore_password = "pw"
    assert refused("serve") == (
        f"error: ESCROW_ORACLE_KEYSTORE: cannot use keystore {missing}: no such file"
    )
    path = keystore(tmp_path, "oracle", "pw")
    cli_settings.oracle_keystore = path
    cli_settings.oracle_keystore_password = None
    assert refused("oracle", "--once") == (
        f"error: ESCROW_ORACLE_KEYSTORE: cannot use keystore {path}: no password given "
        "(ESCROW_ORACLE_KEYSTORE_PASSWORD is not set)"
    )
    assert served == []


def test_serve_starts_with_keys_that_load(
    invoke: Invoke, cli_settings: Settings, served: list[Any], tmp_path: Path
) -> None:
    cli_settings.relayer_keystore = keystore(tmp_path, "relayer", "right")
    cli_settings.relayer_keystore_password = "right"
    result = invoke("serve", "--no-workers")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(served) == 1


def test_serve_off_the_development_chain_refuses_to_start_without_a_siwe_domain(
    refused: Callable[..., str], invoke: Invoke, cli_settings: Settings, served: list[Any],
    env: EscrowEnv, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the in-process chain (id 131277322940537), taken for a network that is not a dev chain
    monkeypatch.setattr("backend.chain.connect.is_in_process", lambda _w3: False)
    chain_id = int(env.w3.eth.chain_id)
    assert refused("serve", "--no-workers") == (
        f"error: ESCROW_SIWE_DOMAIN is not set: on chain {chain_id} (not the development "
        "chain 31337) sign-in messages must name this service's own domain, not the "
        "request's Host header; set it to the host[:port] users reach the service at"
    )
    assert served == []
    cli_settings.siwe_domain = "escrow.example.com"
    result = invoke("serve", "--no-workers")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(served) == 1


def test_serve_on_the_development_chain_keeps_the_host_header_as_the_siwe_domain(
    invoke: Invoke, cli_settings: Settings, served: list[Any]
) -> None:
    assert cli_settings.siwe_domain is None
    result = invoke("serve", "--no-workers")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(served) == 1



def test_up_refuses_a_relayer_keystore_with_a_wrong_password_before_serving_or_seeding(
    refused: Callable[..., str], cli_settings: Settings, served: list[Any], tmp_path: Path,
    env: EscrowEnv, monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = SimpleNamespace(w3=env.w3)  # the node `escrow up` found (or started)
    monkeypatch.setattr("backend.escrows.local_stack.local_chain", lambda *_a: chain)
    seeding: list[Any] = []
    monkeypatch.setattr("backend.escrows.seed.start_seeding", lambda *a, **k: seeding.append(a))
    path = keystore(tmp_path, "relayer", "right")
    cli_settings.relayer_keystore = path
    cli_settings.relayer_keystore_password = "wrong"
    assert refused("up") == (
        f"error: ESCROW_RELAYER_KEYSTORE: cannot use keystore {path}: wrong password "
        "(ESCROW_RELAYER_KEYSTORE_PASSWORD) or corrupt file"
    )
    assert served == [] and seeding == []
