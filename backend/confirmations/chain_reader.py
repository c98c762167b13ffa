"""What the confirmation checks read from the chain (and the index), behind one small interface so
that the checks themselves stay plain functions. Node reads go through `from_node`: a node that
does not answer is a 503 `NodeUnavailable`; reverts pass through.

The chain's state a confirmation is judged on (the latest block's time, `getEscrow` and
`getMilestone`) is one `ChainSnapshot`, asked of an HTTP node in one JSON-RPC batch and decoded by
eth-abi directly (`Web3ChainReader.snapshot`): three requests through web3.py's middleware, each
with its own formatting of the reply, cost most of a confirmation's time before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3._utils.error_formatters_utils import raise_contract_logic_error_on_revert
from web3.exceptions import BlockNotFound, Web3RPCError
from web3.types import RPCResponse

from backend.chain import erc1271
from backend.chain.artifacts import load_artifact
from backend.chain.bulk_rpc import batch, error_message, speaks_batches
from backend.chain.client import CONTRACT_NAME
from backend.chain.eip712 import Confirmation
from backend.chain.errors import ChainError, EscrowUnknown, from_node
from backend.chain.keys import relayer_account
from backend.chain.transactions import REVERT_EXCEPTIONS, as_chain_error, estimate_within
from backend.chain.types import EscrowParams, EscrowView, MilestoneState, MilestoneView
from backend.db.models import EscrowRow
from backend.errors import ConfigurationError, NotFoundError
from backend.services import Services


@dataclass(frozen=True)
class ChainSnapshot:
    """The chain's state one confirmation is judged on, read at once: `now` (`Clock.now`: the
    later of the latest block's time and service time) and the contract's `getEscrow` and
    `getMilestone` answers. A call that reverted keeps its typed error, raised by `escrow()` or
    `milestone()` when the checks come to it, so the checks refuse in the same order as when
    each value was asked on its own."""

    now: int
    escrow_view: EscrowView | ChainError
    milestone_view: MilestoneView | ChainError

    def escrow(self) -> EscrowView:
        """The contract's `getEscrow`: status, locked, nominal, counts (or its revert)."""
        if isinstance(self.escrow_view, ChainError):
            raise self.escrow_view
        return self.escrow_view

    def milestone(self) -> MilestoneView:
        """The contract's `getMilestone` (or its revert)."""
        if isinstance(self.milestone_view, ChainError):
            raise self.milestone_view
        return self.milestone_view


class ChainReader(Protocol):
    """The chain as the confirmation checks see it."""

    chain_id: int
    contract: ChecksumAddress
    #: `ESCROW_RELAY_MAX_GAS`: the most gas the relayer gives a `confirmWithSig`
    relay_max_gas: int

    def snapshot(self, escrow_id: int, milestone: int) -> ChainSnapshot: ...

    def params(self, escrow_id: int) -> EscrowParams: ...

    def has_code(self, address: str) -> bool: ...

    def erc1271_accepts(self, wallet: str, digest: bytes, signature: bytes) -> bool: ...

    def relayer(self) -> ChecksumAddress: ...

    def relay_gas(
        self, params: EscrowParams, confirmation: Confirmation, signature: bytes
    ) -> int: ...


#: the relayer's address per (chain id, keystore): a keystore takes long to decrypt
_RELAYERS: dict[tuple[int, str], ChecksumAddress] = {}
#: the sender of the relay simulation when no relayer key is configured (the service cannot
#: relay then anyway; the simulation still runs the wallet's check as the escrow makes it)
NO_RELAYER: ChecksumAddress = to_checksum_address("0x" + "00" * 19 + "01")


@dataclass(frozen=True)
class _View:
    """A view function of the escrow contract, as eth-abi encodes and decodes it."""

    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def data(self, *args: int) -> str:
        return "0x" + (self.selector + abi_encode(self.inputs, args)).hex()

    def decode(self, raw: bytes) -> tuple[Any, ...]:
        return abi_decode(self.outputs, raw)


@cache
def _view(name: str) -> _View:
    """The contract ABI's function `name` (the escrow's compiled artifact)."""
    (abi,) = [
        item for item in load_artifact(CONTRACT_NAME).abi
        if item.get("type") == "function" and item.get("name") == name
    ]
    return _View(
        function_abi_to_4byte_selector(abi),  # type: ignore[arg-type]
        tuple(get_abi_input_types(abi)),  # type: ignore[arg-type]
        tuple(get_abi_output_types(abi)),  # type: ignore[arg-type]
    )


def _call_result(reply: RPCResponse) -> bytes | ChainError:
    """The bytes an `eth_call` reply returned, or its revert as the typed error
    `backend.chain.transactions.call` raises for it (web3.py's own reading of a revert reply,
    then `as_chain_error`). Any other error raises `Web3RPCError`, as web3.py does."""
    if reply.get("error") is None:
        return bytes.fromhex(str(reply.get("result") or "0x").removeprefix("0x"))
    try:
        raise_contract_logic_error_on_revert(reply)
    except REVERT_EXCEPTIONS as exc:
        return as_chain_error(exc)
    raise Web3RPCError(f"eth_call: {error_message(reply)}", rpc_response=reply)


def _escrow_answer(reply: RPCResponse) -> EscrowView | ChainError:
    raw = _call_result(reply)
    if isinstance(raw, ChainError):
        return raw
    (view,) = _view("getEscrow").decode(raw)
    return EscrowView.from_abi(view)


def _milestone_answer(reply: RPCResponse) -> MilestoneView | ChainError:
    raw = _call_result(reply)
    if isinstance(raw, ChainError):
        return raw
    state, since = _view("getMilestone").decode(raw)
    return MilestoneView(MilestoneState(state), int(since))


def _block_time(reply: RPCResponse) -> int:
    """The timestamp of an `eth_getBlockByNumber` reply; raises as web3.py's `get_block`."""
    if reply.get("error") is not None:
        raise Web3RPCError(f"eth_getBlockByNumber: {error_message(reply)}", rpc_response=reply)
    block = reply.get("result")
    if not isinstance(block, Mapping):
        raise BlockNotFound("the latest block was not found")
    return int(str(block["timestamp"]), 16)


class Web3ChainReader:
    """`ChainReader` over the service's node connection and its indexed events."""

    def __init__(self, services: Services, session: Session) -> None:
        self.services = services
        self.session = session
        self.chain_id = services.chain_id
        self.contract = services.escrow.address
        self.relay_max_gas = services.settings.relay_max_gas

    def snapshot(self, escrow_id: int, milestone: int) -> ChainSnapshot:
        """The latest block's time, `getEscrow(escrow_id)` and `getMilestone(escrow_id,
        milestone)`: over HTTP in one JSON-RPC batch (`backend.chain.bulk_rpc.batch`), decoded
        by eth-abi; elsewhere (the in-process chain) asked one at a time through web3.py, as
        `Clock.now` and `EscrowClient` ask them. Raises `NodeUnavailable` (503) when the node
        does not answer."""
        w3 = self.services.w3
        if not speaks_batches(w3):
            return self._snapshot_slowly(escrow_id, milestone)
        to = self.contract
        calls: Sequence[tuple[str, Sequence[Any]]] = (
            ("eth_getBlockByNumber", ("latest", False)),
            ("eth_call", ({"to": to, "data": _view("getEscrow").data(escrow_id)}, "latest")),
            (
                "eth_call",
                ({"to": to, "data": _view("getMilestone").data(escrow_id, milestone)}, "latest"),
            ),
        )
        # named after its first read, as `Clock.now` names it: the 503 says what it said
        block, escrow, state = from_node("latest block", lambda: batch(w3, calls))
        now = max(_block_time(block), self.services.clock.service_time())  # as `Clock.now`
        try:
            return ChainSnapshot(now, _escrow_answer(escrow), _milestone_answer(state))
        except DecodingError:  # not the escrow's answer (no code there): web3.py explains it
            return self._snapshot_slowly(escrow_id, milestone)

    def _snapshot_slowly(self, escrow_id: int, milestone: int) -> ChainSnapshot:
        """`snapshot` as three requests through web3.py (`Clock.now`, `EscrowClient`)."""
        escrow = self.services.escrow
        now = self.services.clock.now()
        escrow_view: EscrowView | ChainError
        milestone_view: MilestoneView | ChainError
        try:
            escrow_view = from_node("escrow", lambda: escrow.get_escrow(escrow_id))
        except ChainError as exc:
            escrow_view = exc
        try:
            milestone_view = from_node(
                "milestone", lambda: escrow.get_milestone(escrow_id, milestone)
            )
        except ChainError as exc:
            milestone_view = exc
        return ChainSnapshot(now, escrow_view, milestone_view)

    def params(self, escrow_id: int) -> EscrowParams:
        """From the indexed `EscrowCreated`, or from the node's logs when not indexed yet."""
        # the one column, without loading the whole row as an object
        escrows = EscrowRow.__table__.c
        stored = self.session.execute(
            select(escrows.params).where(
                escrows.chain_id == self.chain_id, escrows.escrow_id == escrow_id
            )
        ).scalar()
        if stored is not None:
            return EscrowParams.from_json(stored)
        try:
            return from_node("escrow parameters", lambda: self.services.escrow.params(escrow_id))
        except EscrowUnknown as exc:
            raise NotFoundError("escrow", escrow_id) from exc

    def has_code(self, address: str) -> bool:
        return erc1271.has_code(self.services.w3, address)

    def erc1271_accepts(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        """The wallet's own verdict (`backend.chain.erc1271.is_valid_signature`)."""
        return erc1271.is_valid_signature(self.services.w3, wallet, digest, signature)

    def relayer(self) -> ChecksumAddress:
        """The relayer's address (`backend.chain.keys.relayer_account`, derived once per chain
        and keystore), or `NO_RELAYER` when no relayer key can be loaded."""
        settings = self.services.settings
        key = (self.chain_id, str(settings.relayer_keystore))
        found = _RELAYERS.get(key)
        if found is None:
            try:
                account = from_node(
                    "chain id", lambda: relayer_account(self.services.w3, settings)
                )
            except ConfigurationError:
                return NO_RELAYER
            found = _RELAYERS[key] = account.address
        return found

    def relay_gas(
        self, params: EscrowParams, confirmation: Confirmation, signature: bytes
    ) -> int:
        """The gas the relayer's `confirmWithSig` of `confirmation` needs: the real call,
        simulated from the relayer's address (`estimate_within`, at most
        `ESCROW_RELAY_MAX_GAS`), so a contract wallet is judged as the escrow will ask it.
        Raises `GasOverCap` (422), the decoded revert, or `NodeUnavailable` (503)."""
        c = confirmation
        fn = self.services.escrow.contract.functions.confirmWithSig(
            c.escrow_id, params.to_abi(), c.milestone, c.rating, c.comment_hash, c.deadline,
            signature,
        )
        sender = self.relayer()
        return from_node(
            "relay simulation",
            lambda: estimate_within(
                fn, sender, self.relay_max_gas,
                what=f"relaying confirmWithSig of escrow {c.escrow_id} milestone {c.milestone}",
                setting="relay_max_gas",
            ),
        )
