"""Controls only development chains offer: moving time and their well-known funded keys."""

from __future__ import annotations

from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.chain.clock import chain_time
from backend.chain.connect import HARDHAT_CHAIN_ID, is_in_process
from backend.errors import ConfigurationError

#: Hardhat's published development mnemonic; its keys are public and worthless anywhere else
HARDHAT_MNEMONIC = "test test test test test test test test test test test junk"


def latest_timestamp(w3: Web3) -> int:
    """The chain's time (`backend.chain.clock.chain_time`)."""
    return chain_time(w3)


def advance_time(w3: Web3, seconds: int) -> int:
    """Moves the chain's clock `seconds` ahead so the next transaction runs at latest + seconds.

    On Hardhat the mined block itself carries latest + seconds. eth-tester mines its block at
    latest + seconds - 1 (so `advance_time(w3, 1)` mines no later block) and the next block at
    latest + seconds; tests that need exact boundaries account for that."""
    target = latest_timestamp(w3) + seconds
    if is_in_process(w3):
        tester = cast(Any, w3.provider).ethereum_tester
        tester.time_travel(target)
        return latest_timestamp(w3)
    _require_hardhat(w3)
    w3.provider.make_request("evm_setNextBlockTimestamp", [target])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    return latest_timestamp(w3)


def dev_accounts(w3: Web3, count: int = 10) -> list[LocalAccount]:
    """The chain's funded development keys: eth-tester's, or Hardhat's on chain id 31337 only."""
    if is_in_process(w3):
        tester = cast(Any, w3.provider).ethereum_tester
        keys = tester.backend.account_keys[:count]
        return [Account.from_key(k.to_bytes()) for k in keys]
    _require_hardhat(w3)
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(HARDHAT_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        for i in range(count)
    ]


def _require_hardhat(w3: Web3) -> None:
    chain_id = int(w3.eth.chain_id)
    if chain_id != HARDHAT_CHAIN_ID:
        raise ConfigurationError(
            f"development controls are refused on chain id {chain_id}: only 31337 (Hardhat) "
            "or the in-process chain"
        )


def snapshot(w3: Web3) -> Any:
    if is_in_process(w3):
        return cast(Any, w3.provider).ethereum_tester.take_snapshot()
    return w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]


def revert(w3: Web3, snapshot_id: Any) -> None:
    if is_in_process(w3):
        cast(Any, w3.provider).ethereum_tester.revert_to_snapshot(snapshot_id)
        return
    w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]
