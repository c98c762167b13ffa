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
    """A keystore that cannot be used: unreadable or missing file, not a keystore, no password,
    a wrong password. `setting` names the environment variable that pointed at it, when one
    did (`ESCROW_RELAYER_KEYSTORE`): the message then starts with the role and the setting."""

    code = "keystore"

    def __init__(self, path: Path, reason: str, *, setting: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.setting = setting
        message = f"cannot use keystore {path}: {reason}"
        if setting is not None:
            message = f"{setting}: {message}"
        super().__init__(message)


class KeyNotConfigured(ConfigurationError):
    """No key is configured for a role (`relayer`, `oracle`, `deployer`) and the chain is not a
    dev chain: the role's worker does not run (`backend/workers.py` reports it as off)."""

    def __init__(self, role: str, chain_id: int) -> None:
        self.role = role
        self.chain_id = chain_id
        super().__init__(
            f"no {role} key: set ESCROW_{role.upper()}_KEYSTORE and its password "
            f"(development keys are accepted only on chain id 31337, this is {chain_id})"
        )


def load_keystore(
    path: Path, password: str | None, *, setting: str | None = None
) -> LocalAccount:
    """Decrypts an encrypted JSON keystore (the key never leaves this process). Raises
    `KeystoreError` (naming `setting`, when given) for a missing or unreadable file, one that is
    not JSON, no password, or a wrong password."""
    password_setting = f"{setting}_PASSWORD" if setting is not None else None
    try:
        encrypted = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise KeystoreError(path, "no such file", setting=setting) from exc
    except OSError as exc:
        raise KeystoreError(path, exc.strerror or str(exc), setting=setting) from exc
    except ValueError as exc:
        raise KeystoreError(path, f"not a JSON keystore ({exc})", setting=setting) from exc
    if password is None:
        reason = "no password given" if password_setting is None else (
            f"no password given ({password_setting} is not set)"
        )
        raise KeystoreError(path, reason, setting=setting)
    try:
        key = Account.decrypt(encrypted, password)
    except (ValueError, TypeError, KeyError) as exc:
        reason = "wrong password or corrupt file" if password_setting is None else (
            f"wrong password ({password_setting}) or corrupt file"
        )
        raise KeystoreError(path, reason, setting=setting) from exc
    account: LocalAccount = Account.from_key(key)
    return account


def _role_account(
    w3: Web3, role: str, path: Path | None, password: str | None, dev_index: int
) -> LocalAccount:
    """The role's keystore when one is configured (`KeystoreError` naming its setting when it
    cannot be loaded), else the dev chain's key `dev_index`; `KeyNotConfigured` elsewhere."""
    if path is not None:
        return load_keystore(path, password, setting=f"ESCROW_{role.upper()}_KEYSTORE")
    if is_dev_chain(w3):
        return devchain.dev_accounts(w3, dev_index + 1)[dev_index]
    raise KeyNotConfigured(role, int(w3.eth.chain_id))


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


#: the roles the service's workers send from, with their key loaders
SERVICE_KEYS = {"relayer": relayer_account, "oracle": oracle_account}


def check_service_keys(w3: Web3, settings: Settings) -> dict[str, str]:
    """Loads the keys the service's senders use (`SERVICE_KEYS`) as their workers will, before
    anything starts. Raises `KeystoreError` (naming the setting, the file and why: no such file,
    no password, a wrong password) for a key that is configured but cannot be loaded. Returns
    the roles with no key configured (off a dev chain), each with why: their workers are off."""
    off: dict[str, str] = {}
    for role, load in SERVICE_KEYS.items():
        try:
            load(w3, settings)
        except KeyNotConfigured as exc:
            off[role] = exc.message
    return off
