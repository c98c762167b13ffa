"""Signing keys: encrypted JSON keystores, or a dev chain's published keys on dev chains only."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.chain import devchain
from backend.chain.connect import is_dev_chain
from backend.config import Settings
from backend.errors import ConfigurationError


class KeystoreError(ConfigurationError):
    code = "keystore"

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot use keystore {path}: {reason}")


def load_keystore(path: Path, password: str | None) -> LocalAccount:
    """Decrypts an encrypted JSON keystore (the key never leaves this process)."""
    try:
        encrypted = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeystoreError(path, str(exc)) from exc
    if password is None:
        raise KeystoreError(path, "no password given")
    try:
        key = Account.decrypt(encrypted, password)
    except ValueError as exc:
        raise KeystoreError(path, "wrong password or corrupt file") from exc
    account: LocalAccount = Account.from_key(key)
    return account


def _role_account(
    w3: Web3, role: str, path: Path | None, password: str | None, dev_index: int
) -> LocalAccount:
    if path is not None:
        return load_keystore(path, password)
    if is_dev_chain(w3):
        return devchain.dev_accounts(w3, dev_index + 1)[dev_index]
    raise ConfigurationError(
        f"no {role} key: set ESCROW_{role.upper()}_KEYSTORE and its password "
        f"(development keys are accepted only on chain id 31337, this is {w3.eth.chain_id})"
    )


def deployer_account(w3: Web3, settings: Settings) -> LocalAccount:
    return _role_account(
        w3, "deployer", settings.deployer_keystore, settings.deployer_keystore_password, 0
    )


def relayer_account(w3: Web3, settings: Settings) -> LocalAccount:
    """The key the confirmation relayer sends `confirmWithSig` from (dev key #5 on dev chains)."""
    return _role_account(
        w3, "relayer", settings.relayer_keystore, settings.relayer_keystore_password, 5
    )


def oracle_account(w3: Web3, settings: Settings) -> LocalAccount:
    """The key the KPI oracle sends `reportBreach` / `finalizeBreach` from (dev key #3 on dev
    chains, the oracle of the test parties)."""
    return _role_account(
        w3, "oracle", settings.oracle_keystore, settings.oracle_keystore_password, 3
    )
