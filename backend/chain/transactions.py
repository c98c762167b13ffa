"""Sending contract transactions and turning reverts into typed exceptions.

A sender is either an address the node holds unlocked (eth-tester, Hardhat) or an eth-account
`LocalAccount` whose key signs here (any public network). Every transaction is simulated by the
node's gas estimate first, so a call that would revert raises before anything is broadcast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from eth_utils.abi import get_abi_input_types, get_abi_output_types
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.logs import DISCARD
from web3.types import BlockIdentifier, TxParams, TxReceipt

from backend.chain import revert_types
from backend.chain.errors import (
    ChainError,
    ContractErrorString,
    ContractPanic,
    ContractRevert,
    EventNotEmitted,
    TransactionFailed,
    UnknownRevert,
    is_transport_failure,
)
from backend.errors import OutOfRangeError, QualityEscrowError

Sender = str | LocalAccount

_ERROR_STRING = "0x" + function_signature_to_4byte_selector("Error(string)").hex()
_PANIC = "0x" + function_signature_to_4byte_selector("Panic(uint256)").hex()


@lru_cache(maxsize=256)
def _selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


def calldata(fn: ContractFunction) -> bytes:
    """The call data of the bound call `fn`: its 4-byte selector and its arguments ABI-encoded by
    eth-abi directly. web3's own encoder first normalizes every nested value and costs about
    eight times as much for the escrow's calls (about 5 ms against 0.6 ms for a `confirmWithSig`
    of a 64-milestone escrow, measured in docs/performance.md "Relay"); the bytes are the same.
    Arguments eth-abi cannot take as they are (keyword arguments, values web3 would normalize
    first) go through web3."""
    if not fn.kwargs:
        try:
            return _selector(fn.signature) + abi_encode(get_abi_input_types(fn.abi), fn.args)
        except (EncodingError, TypeError, ValueError):
            pass
    return bytes(HexBytes(fn._encode_transaction_data()))


def sender_address(sender: Sender) -> ChecksumAddress:
    return sender.address if isinstance(sender, LocalAccount) else to_checksum_address(sender)


@lru_cache(maxsize=1)
def _revert_classes() -> dict[str, type[ContractRevert]]:
    return {cls.selector: cls for cls in revert_types.ALL}


def _abi_types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : -1]
    return [t for t in inner.split(",") if t]


def decode_revert_data(data: str | bytes | None) -> ChainError:
    """Maps raw revert data to the matching typed exception."""
    if isinstance(data, bytes):
        data = "0x" + data.hex()
    data = (data or "").lower()
    if not data.startswith("0x"):
        data = "0x" + data
    selector, payload = data[:10], bytes.fromhex(data[10:]) if len(data) > 10 else b""
    try:
        if selector == _ERROR_STRING:
            (reason,) = abi_decode(["string"], payload)
            return ContractErrorString(str(reason))
        if selector == _PANIC:
            (code,) = abi_decode(["uint256"], payload)
            return ContractPanic(int(code))
        cls = _revert_classes().get(selector)
        if cls is not None:
            values = abi_decode(_abi_types(cls.signature), payload)
            converted = [
                to_checksum_address(v) if t == "address" else v
                for t, v in zip(_abi_types(cls.signature), values, strict=True)
            ]
            error: ChainError = cast(Any, cls)(*converted)  # generated __init__: the fields
            return error
    except Exception:  # malformed payload for a known selector
        return UnknownRevert(data)
    return UnknownRevert(data)


def _exception_data(exc: BaseException) -> str | None:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) else None


def _tester_revert_bytes(exc: BaseException) -> bytes | None:
    """eth-tester re-raises reverts as `TransactionFailed("execution reverted: b'...'")`; the
    raw revert data survives on the exception it was raised from."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in ("TransactionFailed", "Revert") and seen.args:
            first = seen.args[0]
            if isinstance(first, Exception) and first.args:
                first = first.args[0]
            if isinstance(first, bytes):
                return first
        seen = seen.__cause__ or seen.__context__
    return None


def as_chain_error(exc: BaseException) -> ChainError:
    raw = _tester_revert_bytes(exc)
    if raw is not None:
        return decode_revert_data(raw)
    data = _exception_data(exc)
    if data and data != "0x":
        return decode_revert_data(data)
    message = str(getattr(exc, "message", None) or exc)
    if "execution reverted: " in message:
        return ContractErrorString(message.split("execution reverted: ", 1)[1])
    return UnknownRevert(data or "")


def _revert_exceptions() -> tuple[type[Exception], ...]:
    found: list[type[Exception]] = [ContractCustomError, ContractLogicError, ContractPanicError]
    try:  # the in-process chain's own failure type, when eth-tester is installed
        from eth_tester.exceptions import TransactionFailed as TesterTransactionFailed

        found.append(TesterTransactionFailed)
    except ImportError:  # pragma: no cover - production installs have no eth-tester
        pass
    return tuple(found)


REVERT_EXCEPTIONS = _revert_exceptions()


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[DecodedEvent, ...]

    def event(self, name: str) -> DecodedEvent:
        """The one event of that name this transaction emitted."""
        found = [e for e in self.events if e.name == name]
        if len(found) != 1:
            raise EventNotEmitted(name, len(found))
        return found[0]

    def events_named(self, name: str) -> list[DecodedEvent]:
        return [e for e in self.events if e.name == name]


def _plain(value: Any) -> Any:
    """AttributeDicts and HexBytes from web3 into plain dicts, lists and bytes."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return bytes(value)
    return value


def decode_logs(contract: Contract, receipt: TxReceipt) -> tuple[DecodedEvent, ...]:
    events: list[DecodedEvent] = []
    for abi_event in _event_abis(contract):
        for log in contract.events[abi_event].process_receipt(receipt, errors=DISCARD):
            events.append(event_from_log(log))
    events.sort(key=lambda e: e.log_index)
    return tuple(events)


def event_from_log(log: Any) -> DecodedEvent:
    return DecodedEvent(
        name=str(log["event"]),
        args=_plain(log["args"]),
        block_number=int(log["blockNumber"]),
        tx_hash="0x" + bytes(log["transactionHash"]).hex(),
        log_index=int(log["logIndex"]),
    )


def _event_abis(contract: Contract) -> Iterable[str]:
    return [str(e.get("name")) for e in contract.abi if e.get("type") == "event"]


def send(
    w3: Web3,
    contract: Contract,
    fn: ContractFunction,
    sender: Sender,
    *,
    value: int = 0,
    receipt_timeout: float = 120,
) -> TxResult:
    """Simulates, sends and waits for one transaction; raises the decoded revert on failure."""
    address = sender_address(sender)
    params: TxParams = {"from": address, "value": Web3.to_wei(value, "wei")}
    try:
        if isinstance(sender, LocalAccount):
            params["nonce"] = w3.eth.get_transaction_count(address, "pending")
            tx = fn.build_transaction(params)
            signed = sender.sign_transaction(cast(dict[str, Any], tx))
            tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        else:
            tx_hash = fn.transact(params)
    except REVERT_EXCEPTIONS as exc:
        raise as_chain_error(exc) from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=receipt_timeout)
    if receipt["status"] != 1:
        raise _replay_failure(w3, fn, address, value, receipt)
    return TxResult(
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        block_number=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
        events=decode_logs(contract, receipt),
    )


def _replay_failure(
    w3: Web3, fn: ContractFunction, address: str, value: int, receipt: TxReceipt
) -> ChainError:
    """A mined revert carries no reason: replay it as a call on the parent block to find one."""
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    try:
        fn.call({"from": to_checksum_address(address), "value": Web3.to_wei(value, "wei")},
                block_identifier=int(receipt["blockNumber"]) - 1)
    except REVERT_EXCEPTIONS as exc:
        return as_chain_error(exc)
    except Exception:  # replay impossible (pruned state); fall through
        pass
    return TransactionFailed(tx_hash)


def call(fn: ContractFunction, *, block: BlockIdentifier = "latest") -> Any:
    """A read-only call (`eth_call` at `block`): its one output, or its outputs as a list, as
    web3.py's `ContractFunction.call` returns them; reverts come back as typed exceptions.

    The call data is encoded by `calldata` and outputs without addresses are decoded by eth-abi
    directly: web3.py's contract call checks the whole ABI and normalizes every value on each
    call, which cost more than the node's own work for the escrow's views (a `getEscrow` took
    about 25 ms of CPU under a profiler, most of it there). Outputs with addresses (web3.py
    checksums them) and output web3.py must explain (no code at the address) go through
    web3.py."""
    try:
        types = get_abi_output_types(fn.abi)
        if fn.kwargs or any("address" in t for t in types):
            return fn.call(block_identifier=block)
        raw = fn.w3.eth.call({"to": fn.address, "data": HexBytes(calldata(fn))},
                             block_identifier=block)
    except REVERT_EXCEPTIONS as exc:
        raise as_chain_error(exc) from exc
    try:
        values = abi_decode(types, bytes(raw))
    except DecodingError:
        return call_slowly(fn, block=block)
    return values[0] if len(values) == 1 else list(values)


def call_slowly(fn: ContractFunction, *, block: BlockIdentifier = "latest") -> Any:
    """`call` through web3.py's own `ContractFunction.call` (its checks and messages)."""
    try:
        return fn.call(block_identifier=block)
    except REVERT_EXCEPTIONS as exc:
        raise as_chain_error(exc) from exc


# ------------------------------------------------------------------ gas caps

#: what nodes say when a simulation ran out of gas rather than reverted (Hardhat: "Transaction
#: ran out of gas", "Transaction requires gas floor of N"; geth: "gas required exceeds
#: allowance"; "intrinsic gas too low")
_OUT_OF_GAS = re.compile(r"out of gas|gas floor|gas required exceeds|intrinsic gas", re.I)
#: a call that does not succeed within its gas cap is simulated once more with this many times
#: the cap, to tell "needs more gas" (with the figure) from a revert
PROBE_FACTOR = 4


class GasOverCap(ChainError, OutOfRangeError):
    """422: a call needs more gas than its sender's cap allows (`Settings.relay_max_gas`,
    `report_max_gas`, `finalize_max_gas`). `needed` is the node's estimate, or None when the
    call did not succeed even with `probed` gas (`PROBE_FACTOR` times the cap)."""

    code = "gas_over_cap"

    def __init__(
        self, what: str, cap: int, setting: str, needed: int | None, probed: int
    ) -> None:
        self.what = what
        self.cap = cap
        self.setting = setting
        self.needed = needed
        self.probed = probed
        self.field, self.value, self.expected = setting, needed, f"at most {cap}"
        amount = f"{needed:,} gas" if needed is not None else f"more than {probed:,} gas"
        QualityEscrowError.__init__(
            self,
            f"{what} needs {amount}, over the gas cap of {cap:,} "
            f"(ESCROW_{setting.upper()}); nothing was signed",
        )


def estimate_within(
    fn: ContractFunction, sender: str, cap: int, *, what: str, setting: str,
    block_gas_limit: int | None = None,
) -> int:
    """The gas `fn` needs sent from `sender`, simulated with at most `cap` gas (`eth_estimateGas`
    with `gas` set: the node never searches beyond it, so a call that burns gas costs the node
    at most a bounded search).

    When the call does not succeed within `cap` it is simulated once more with `PROBE_FACTOR`
    times the cap (at most `block_gas_limit`): success there raises `GasOverCap` with the gas it
    needs; a revert there too is the call's own revert, raised as the decoded `ChainError` (a
    contract wallet that needs more than the probe to answer shows as its signature refused);
    anything else (out of gas) is `GasOverCap` without a figure. A transport failure is raised
    as it is."""
    try:
        return int(fn.estimate_gas({"from": to_checksum_address(sender), "gas": cap}))
    except Exception as exc:
        if is_transport_failure(exc):
            raise
    probed = cap * PROBE_FACTOR
    if block_gas_limit is not None:
        probed = max(min(probed, block_gas_limit), cap)
    try:
        needed = int(fn.estimate_gas({"from": to_checksum_address(sender), "gas": probed}))
    except REVERT_EXCEPTIONS as exc:
        error = as_chain_error(exc)
        if isinstance(error, ContractRevert | ContractPanic) or (
            isinstance(error, ContractErrorString) and not _OUT_OF_GAS.search(error.reason)
        ):
            raise error from exc
        raise GasOverCap(what, cap, setting, None, probed) from exc
    except Exception as exc:
        if is_transport_failure(exc):
            raise
        raise GasOverCap(what, cap, setting, None, probed) from exc
    if needed <= cap:  # the node's state moved between the two simulations
        return needed
    raise GasOverCap(what, cap, setting, needed, probed)
