"""A local signer that signs and sends what the service hands out: ready transactions
`{to, data, value}` and EIP-712 typed data. The key never leaves this process.

Keys come from encrypted JSON keystores (`escrow keys new|import`, stored as
`<ESCROW_DATA_DIR>/keys/<name>.json`), a keystore file's path, or, on the development chain
(chain id 31337, or the in-process chain) only, Hardhat's published keys by role name
(`DEV_ROLES`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3
from web3.exceptions import TimeExhausted
from web3.types import TxParams

from backend.chain import devchain
from backend.chain.connect import is_dev_chain
from backend.chain.errors import ChainError, TransactionFailed, UnknownRevert, from_node
from backend.chain.keys import load_keystore
from backend.chain.transactions import REVERT_EXCEPTIONS, as_chain_error
from backend.config import Settings
from backend.errors import ConfigurationError
from backend.inputs import parse_address, parse_amount
from backend.outbox.fees import initial_fees, read_market

__all__ = [
    "DEV_ROLES",
    "KEY_NAME",
    "SentTx",
    "TokenRevert",
    "TransactionNotMined",
    "Wallet",
    "address_of_keystore",
    "decode_revert",
    "dev_role_refusal",
    "keys_dir",
    "keystore_for",
    "keystore_path",
    "load_signer",
    "unknown_key",
]

#: the development chain's funded accounts by role (Hardhat mnemonic index), chain 31337 only
DEV_ROLES: dict[str, int] = {
    "deployer": 0, "client": 1, "provider": 2, "oracle": 3, "arbiter": 4, "relayer": 5,
}
#: a keystore's name: letters, digits, `.`, `_`, `-`; no path separator; at most 64 characters
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: the most a wallet offers per gas unless told otherwise (`ESCROW_MAX_FEE_PER_GAS`'s default)
DEFAULT_MAX_FEE_PER_GAS = 500 * 10**9
#: gas estimates are raised by this share (the node's estimate is exact for the state it saw)
GAS_MARGIN = (6, 5)


#: ERC-6093's custom errors of ERC-20 tokens (OpenZeppelin 5), which the escrow's ABI does not
#: declare: a creation whose `transferFrom` fails reverts with one of them
ERC20_ERRORS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    function_signature_to_4byte_selector(f"{name}({','.join(types)})").hex(): (
        name, types, names)
    for name, types, names in (
        ("ERC20InsufficientBalance", ("address", "uint256", "uint256"),
         ("sender", "balance", "needed")),
        ("ERC20InsufficientAllowance", ("address", "uint256", "uint256"),
         ("spender", "allowance", "needed")),
        ("ERC20InvalidSender", ("address",), ("sender",)),
        ("ERC20InvalidReceiver", ("address",), ("receiver",)),
        ("ERC20InvalidApprover", ("address",), ("approver",)),
        ("ERC20InvalidSpender", ("address",), ("spender",)),
    )
}


class TokenRevert(ChainError):
    """A token's ERC-6093 custom error (`ERC20InsufficientBalance(sender=0x.., balance=..,
    needed=..)`): `error_name` and `fields` as a `ContractRevert` has them."""

    code = "token_revert"

    def __init__(self, error_name: str, fields: dict[str, Any]) -> None:
        self.error_name = error_name
        self.fields = fields
        shown = ", ".join(f"{k}={v}" for k, v in fields.items())
        super().__init__(f"{error_name}({shown})")


def decode_revert(exc: BaseException) -> ChainError:
    """`as_chain_error(exc)`, with the ERC-6093 errors of ERC-20 tokens decoded too."""
    error = as_chain_error(exc)
    if isinstance(error, UnknownRevert) and len(error.data) >= 10:
        known = ERC20_ERRORS.get(error.data[2:10].lower())
        if known is not None:
            name, types, names = known
            try:
                values = abi_decode(list(types), bytes.fromhex(error.data[10:]))
            except Exception:  # malformed payload: keep the raw data
                return error
            return TokenRevert(name, {
                n: to_checksum_address(v) if t == "address" else int(v)
                for n, t, v in zip(names, types, values, strict=True)
            })
    return error


class TransactionNotMined(ChainError):
    """A sent transaction had no receipt within the time waited."""

    code = "not_mined"

    def __init__(self, tx_hash: str, seconds: float) -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} was not mined within {seconds:g} s")


@dataclass(frozen=True)
class SentTx:
    """A mined transaction: its hash (0x hex), block number, gas used and receipt status
    (1; a reverted one raises instead)."""

    tx_hash: str
    block_number: int
    gas_used: int
    status: int

    def to_json(self) -> dict[str, Any]:
        return {"tx_hash": self.tx_hash, "block_number": self.block_number,
                "gas_used": self.gas_used, "status": self.status}


class Wallet:
    """One account's key on the chain of `w3`: sends ready transactions and signs typed data.

    `max_fee_per_gas` caps what a transaction offers per gas (wei; the `ESCROW_MAX_FEE_PER_GAS`
    default); `receipt_timeout` is how long `send` waits for the receipt (seconds)."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        max_fee_per_gas: int = DEFAULT_MAX_FEE_PER_GAS,
        receipt_timeout: float = 120.0,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.max_fee_per_gas = max_fee_per_gas
        self.receipt_timeout = receipt_timeout

    @property
    def address(self) -> ChecksumAddress:
        return self.account.address

    def send(self, tx: Mapping[str, Any]) -> SentTx:
        """Signs and sends a ready transaction `{to, data, value}` as the API answers it (value
        in wei: a hex quantity such as `"0x0"`, a decimal string or an integer) and waits for
        its receipt.

        Fills the chain id, the pending nonce, EIP-1559 fees (2 * next base fee + tip, at most
        `max_fee_per_gas`; the gas price on a chain without a base fee) and the gas from
        `eth_estimateGas` (plus a fifth). Raises the contract's custom error, decoded
        (`EscrowInvalidStatus(escrowId=3, status=3, required=1)`, a `ContractRevert`), when the
        estimate reverts or the mined transaction did; `NodeUnavailable` when the node does not
        answer; `TransactionNotMined` after `receipt_timeout`."""
        w3 = self.w3
        call = self._call(tx)
        try:
            estimate = from_node("gas estimate", lambda: w3.eth.estimate_gas(call))
        except REVERT_EXCEPTIONS as exc:
            raise decode_revert(exc) from exc
        num, den = GAS_MARGIN
        market = from_node("fee market", lambda: read_market(w3))
        fees = initial_fees(market, self.max_fee_per_gas)
        params: dict[str, Any] = {
            **call,
            "chainId": from_node("chain id", lambda: int(w3.eth.chain_id)),
            "nonce": from_node(
                "nonce", lambda: w3.eth.get_transaction_count(self.address, "pending")
            ),
            "gas": -(-int(estimate) * num // den),
            **fees.params(),
        }
        if fees.tip is not None:
            params["type"] = 2
        signed = self.account.sign_transaction(params)
        try:
            sent = from_node("send", lambda: w3.eth.send_raw_transaction(signed.raw_transaction))
        except REVERT_EXCEPTIONS as exc:
            raise decode_revert(exc) from exc
        tx_hash = "0x" + bytes(sent).hex()
        receipt = self._receipt(tx_hash)
        if int(receipt["status"]) != 1:
            raise self._replay(call, int(receipt["blockNumber"]), tx_hash)
        return SentTx(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            status=int(receipt["status"]),
        )

    def sign_typed_data(self, typed_data: Mapping[str, Any]) -> str:
        """The EIP-712 signature (`eth_signTypedData_v4`) of `typed_data` `{types, primaryType,
        domain, message}` as `POST .../typed-data` answers it: 65 bytes r|s|v as 0x hex."""
        signed = self.account.sign_typed_data(full_message=dict(typed_data))
        return "0x" + bytes(signed.signature).hex()

    # ------------------------------------------------------------------ internals

    def _call(self, tx: Mapping[str, Any]) -> TxParams:
        """`{from, to, data, value}` of a ready transaction, each field checked."""
        to = parse_address("tx.to", tx.get("to"))
        data = tx.get("data") or "0x"
        if not isinstance(data, str) or not re.fullmatch(r"0x([0-9a-fA-F]{2})*", data):
            raise ConfigurationError(f"the service answered a transaction whose data is not hex: "
                                     f"{str(data)[:20]!r}")
        value = _wei("tx.value", tx.get("value", 0) or 0)
        return cast(TxParams, {"from": self.address, "to": to, "data": data, "value": value})

    def _receipt(self, tx_hash: str) -> Any:
        deadline = time.monotonic() + self.receipt_timeout
        while True:
            try:
                return from_node(
                    f"receipt of {tx_hash}",
                    lambda: self.w3.eth.wait_for_transaction_receipt(
                        tx_hash,  # type: ignore[arg-type]
                        timeout=max(0.1, deadline - time.monotonic()),
                        poll_latency=0.1,
                    ),
                )
            except TimeExhausted as exc:
                raise TransactionNotMined(tx_hash, self.receipt_timeout) from exc

    def _replay(self, call: TxParams, block_number: int, tx_hash: str) -> ChainError:
        """A mined revert carries no reason: the call replayed on the block before (then on its
        own block) names the custom error; `TransactionFailed` when no replay says more."""
        for at in (block_number - 1, block_number):
            try:
                self.w3.eth.call(call, block_identifier=at)
            except REVERT_EXCEPTIONS as exc:
                error = decode_revert(exc)
                if not isinstance(error, UnknownRevert):
                    return error
            except Exception:  # pruned state or a node that does not replay: no reason to give
                break
        return TransactionFailed(tx_hash)


def _wei(field: str, value: object) -> int:
    """A transaction's value: a hex quantity (`"0x0"`, what the API answers), a decimal
    string or an integer (`parse_amount`)."""
    if isinstance(value, str) and value[:2].lower() == "0x":
        if not re.fullmatch(r"0x[0-9a-fA-F]{1,64}", value):
            raise ConfigurationError(f"{field}: {value[:20]!r} is no hex quantity")
        return int(value, 16)
    return parse_amount(field, value)


# ---------------------------------------------------------------------- keys


def keys_dir(settings: Settings) -> Path:
    """Where `escrow keys` keeps keystores: `<ESCROW_DATA_DIR>/keys`."""
    return Path(settings.data_dir) / "keys"


def keystore_path(settings: Settings, name: str) -> Path:
    """`<data dir>/keys/<name>.json` for a valid key name (`KEY_NAME`); `ConfigurationError`
    for a name with a path separator or other characters."""
    if not KEY_NAME.match(name) or name.endswith(".json"):
        raise ConfigurationError(
            f"bad key name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, no "
            "path separators, no .json ending)"
        )
    return keys_dir(settings) / f"{name}.json"


def keystore_for(settings: Settings, name: str) -> Path | None:
    """The keystore file `name` refers to: `<data dir>/keys/<name>.json` when it exists, else
    `name` itself when it is a path to an existing file; None otherwise (a dev role name, or
    nothing)."""
    if KEY_NAME.match(name) and not name.endswith(".json"):
        stored = keys_dir(settings) / f"{name}.json"
        if stored.is_file():
            return stored
    path = Path(name).expanduser()
    if ("/" in name or name.endswith(".json")) and path.is_file():
        return path
    return None


def load_signer(
    w3: Web3, settings: Settings, name: str, password: str | None = None
) -> LocalAccount:
    """The account `name` stands for: a keystore made by `escrow keys new|import`
    (`<data dir>/keys/<name>.json`), a path to a keystore file (decrypted with `password`), or,
    on chain 31337 (or the in-process chain) only, a `DEV_ROLES` name (Hardhat's public keys).

    Raises `ConfigurationError` naming `name`: an unknown name, a dev role on another chain;
    `KeystoreError` (a `ConfigurationError`) for no or a wrong password or an unreadable
    file."""
    path = keystore_for(settings, name)
    if path is not None:
        return load_keystore(path, password)
    if name in DEV_ROLES:
        chain_id = from_node("chain id", lambda: int(w3.eth.chain_id))
        if not from_node("chain id", lambda: is_dev_chain(w3)):
            raise dev_role_refusal(name, chain_id)
        index = DEV_ROLES[name]
        return devchain.dev_accounts(w3, index + 1)[index]
    raise unknown_key(settings, name)


def dev_role_refusal(name: str, chain_id: int) -> ConfigurationError:
    """The refusal of a dev role name (`DEV_ROLES`) on a chain other than 31337."""
    return ConfigurationError(
        f"--from {name}: development accounts by role name are accepted only on chain id "
        f"31337, this is chain {chain_id}; make a keystore with `escrow keys new NAME` or "
        "`escrow keys import NAME` and pass --from NAME"
    )


def unknown_key(settings: Settings, name: str) -> ConfigurationError:
    """The refusal of a `--from` that names no keystore, keystore file or dev role."""
    return ConfigurationError(
        f"no keystore {name!r}: neither {keys_dir(settings) / (name + '.json')} nor a keystore "
        "file of that path exists (see `escrow keys list`)"
        + (f"; on chain 31337 a role name ({', '.join(DEV_ROLES)}) also works"
           if name not in DEV_ROLES else "")
    )


def address_of_keystore(path: Path) -> ChecksumAddress | None:
    """The address a keystore file names in its `address` field (no password needed), or None
    when the file is unreadable or names none."""
    import json

    try:
        value = json.loads(path.read_text()).get("address")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(value, str):
        return None
    try:
        return to_checksum_address(value if value.startswith("0x") else "0x" + value)
    except ValueError:
        return None
