"""The typed client over the `QualityEscrow` contract.

Callers name an escrow by its id; the client supplies its `EscrowParams`, read once from the
`EscrowCreated` event (or remembered from `create_escrow`), so no caller builds the struct twice.
Every method that sends returns a `TxResult` with the decoded events; every revert is raised as
the `ContractRevert` subclass of the custom error, carrying its fields.
"""

from __future__ import annotations

from typing import Any

from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.types import BlockIdentifier

from backend.chain.artifacts import load_artifact
from backend.chain.eip712 import Confirmation
from backend.chain.errors import EscrowUnknown
from backend.chain.log_decoder import LogDecoder, event_signature
from backend.chain.logs import logs_between
from backend.chain.transactions import Sender, TxResult, call, send
from backend.chain.types import (
    ZERO_ADDRESS,
    ZERO_HASH,
    BreachView,
    EscrowParams,
    EscrowView,
    MilestoneState,
    MilestoneView,
)
from backend.errors import MalformedInputError

CONTRACT_NAME = "QualityEscrow"

#: action name of the REST API and CLI -> contract function; each takes (escrowId, params, ...)
ACTIONS: dict[str, str] = {
    "accept": "accept",
    "cancel": "cancel",
    "deliver": "submitDelivery",
    "confirm": "confirm",
    "dispute": "openDispute",
    "timeout": "releaseAfterTimeout",
    "challenge": "challengeBreach",
    "finalize": "finalizeBreach",
    "reclaim": "reclaimExpired",
    "resolve-dispute": "resolveDispute",
    "stale-dispute": "settleStaleDispute",
    "resolve-breach": "resolveBreach",
    "stale-breach": "settleStaleBreach",
}


def _b32(value: bytes | str | None) -> bytes:
    if value is None:
        return ZERO_HASH
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise MalformedInputError("hash", f"expected 32 bytes, got {len(raw)}")
    return raw


class EscrowClient:
    """One deployed `QualityEscrow` on one chain."""

    def __init__(self, w3: Web3, address: str, *, from_block: int = 0) -> None:
        self.w3 = w3
        self.address: ChecksumAddress = to_checksum_address(address)
        abi = load_artifact(CONTRACT_NAME).abi
        self.contract: Contract = w3.eth.contract(address=self.address, abi=abi)
        self.from_block = from_block
        self._decoder = LogDecoder(abi)
        [created] = [e for e in abi if e.get("type") == "event" and e["name"] == "EscrowCreated"]
        self._created_topic = "0x" + keccak(text=event_signature(created)).hex()
        self._event_topics = {
            e["name"]: "0x" + keccak(text=event_signature(e)).hex()
            for e in abi if e.get("type") == "event"
        }
        self._params: dict[int, EscrowParams] = {}
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # ------------------------------------------------------------ parameters

    def remember(self, escrow_id: int, params: EscrowParams) -> None:
        self._params[escrow_id] = params

    def remembers(self, escrow_id: int) -> bool:
        """Whether the escrow's parameters are known here already (they never change)."""
        return escrow_id in self._params

    def params(self, escrow_id: int) -> EscrowParams:
        """The escrow's parameters, from the cache or its `EscrowCreated` event."""
        cached = self._params.get(escrow_id)
        if cached is not None:
            return cached
        if not 0 <= escrow_id < 2**256:
            raise EscrowUnknown(escrow_id)
        head = int(self.w3.eth.block_number)
        topics = [self._created_topic, "0x" + escrow_id.to_bytes(32, "big").hex()]
        # paged within what the node accepts (`backend.chain.logs`), not one whole-range query
        logs = logs_between(self.w3, self.address, self.from_block, head, topics=topics)
        if not logs:
            raise EscrowUnknown(escrow_id)
        _, args = self._decoder.decode(logs[0].topics, logs[0].data)
        params = EscrowParams.from_event(args["params"])
        self._params[escrow_id] = params
        return params

    def events_of(
        self, escrow_id: int, event: str, *, depth: int = 0
    ) -> list[tuple[str, dict[str, Any]]]:
        """`(transaction hash, arguments in their JSON form: integers as decimal strings, bytes
        as 0x hex)` of every `event` (an event of the ABI whose first indexed argument is the
        escrow id) the escrow has on the chain from the deployment block to `depth` blocks
        below the head (0: the head; a confirmation depth leaves out what a reorg may still
        take back), in chain order; paged within what the node accepts (`backend.chain.logs`),
        never one whole-range `eth_getLogs`. Raises `KeyError` for an event the ABI does not
        have."""
        head = int(self.w3.eth.block_number) - depth
        topics = [self._event_topics[event], "0x" + escrow_id.to_bytes(32, "big").hex()]
        out: list[tuple[str, dict[str, Any]]] = []
        for log in logs_between(self.w3, self.address, self.from_block, head, topics=topics):
            if not log.removed:
                out.append((log.tx_hash, self._decoder.decode(log.topics, log.data)[1]))
        return out

    # ----------------------------------------------------------- encoding

    def function(self, name: str, escrow_id: int, *args: Any) -> ContractFunction:
        """A bound contract call `name(escrowId, params, *args)` with the params filled in."""
        return self.contract.functions[name](escrow_id, self.params(escrow_id).to_abi(), *args)

    def tx_for(self, name: str, escrow_id: int, *args: Any, value: int = 0) -> dict[str, Any]:
        """`{to, data, value}` ready for a wallet's `eth_sendTransaction`."""
        data = self.function(name, escrow_id, *args)._encode_transaction_data()
        return {"to": self.address, "data": data, "value": hex(value)}

    def create_tx(self, params: EscrowParams) -> dict[str, Any]:
        fn = self.contract.functions.createEscrow(params.to_abi())
        value = params.total if params.is_eth else 0
        return {"to": self.address, "data": fn._encode_transaction_data(), "value": hex(value)}

    # ------------------------------------------------------------- writes

    def _send(self, fn: ContractFunction, sender: Sender, value: int = 0) -> TxResult:
        return send(self.w3, self.contract, fn, sender, value=value)

    def create_escrow(self, params: EscrowParams, sender: Sender) -> tuple[int, TxResult]:
        """Creates and funds the escrow (ETH as value; an ERC-20 must be approved first)."""
        fn = self.contract.functions.createEscrow(params.to_abi())
        result = self._send(fn, sender, params.total if params.is_eth else 0)
        escrow_id = int(result.event("EscrowCreated").args["escrowId"])
        self.remember(escrow_id, params)
        return escrow_id, result

    def cancel(self, escrow_id: int, sender: Sender) -> TxResult:
        return self._send(self.function("cancel", escrow_id), sender)

    def accept(self, escrow_id: int, sender: Sender) -> TxResult:
        return self._send(self.function("accept", escrow_id), sender)

    def submit_delivery(
        self, escrow_id: int, milestone: int, delivery_hash: bytes | str | None, sender: Sender
    ) -> TxResult:
        fn = self.function("submitDelivery", escrow_id, milestone, _b32(delivery_hash))
        return self._send(fn, sender)

    def confirm(
        self,
        escrow_id: int,
        milestone: int,
        rating: int,
        comment_hash: bytes | str | None,
        sender: Sender,
    ) -> TxResult:
        fn = self.function("confirm", escrow_id, milestone, rating, _b32(comment_hash))
        return self._send(fn, sender)

    def confirm_with_sig(
        self,
        confirmation: Confirmation,
        signature: bytes | str,
        sender: Sender,
    ) -> TxResult:
        sig = (
            bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
        )
        fn = self.function(
            "confirmWithSig",
            confirmation.escrow_id,
            confirmation.milestone,
            confirmation.rating,
            _b32(confirmation.comment_hash),
            confirmation.deadline,
            sig,
        )
        return self._send(fn, sender)

    def release_after_timeout(self, escrow_id: int, milestone: int, sender: Sender) -> TxResult:
        return self._send(self.function("releaseAfterTimeout", escrow_id, milestone), sender)

    def open_dispute(
        self, escrow_id: int, milestone: int, reason_hash: bytes | str | None, sender: Sender
    ) -> TxResult:
        fn = self.function("openDispute", escrow_id, milestone, _b32(reason_hash))
        return self._send(fn, sender)

    def resolve_dispute(
        self, escrow_id: int, milestone: int, provider_bps: int, sender: Sender
    ) -> TxResult:
        fn = self.function("resolveDispute", escrow_id, milestone, provider_bps)
        return self._send(fn, sender)

    def settle_stale_dispute(self, escrow_id: int, milestone: int, sender: Sender) -> TxResult:
        return self._send(self.function("settleStaleDispute", escrow_id, milestone), sender)

    def report_breach(
        self,
        escrow_id: int,
        kind: int,
        period: int,
        evidence_hash: bytes | str,
        sender: Sender,
    ) -> tuple[int, TxResult]:
        fn = self.function("reportBreach", escrow_id, kind, period, _b32(evidence_hash))
        result = self._send(fn, sender)
        return int(result.event("BreachReported").args["breachId"]), result

    def challenge_breach(self, escrow_id: int, breach_id: int, sender: Sender) -> TxResult:
        return self._send(self.function("challengeBreach", escrow_id, breach_id), sender)

    def resolve_breach(
        self, escrow_id: int, breach_id: int, upheld: bool, sender: Sender
    ) -> TxResult:
        return self._send(self.function("resolveBreach", escrow_id, breach_id, upheld), sender)

    def settle_stale_breach(self, escrow_id: int, breach_id: int, sender: Sender) -> TxResult:
        return self._send(self.function("settleStaleBreach", escrow_id, breach_id), sender)

    def finalize_breach(self, escrow_id: int, breach_id: int, sender: Sender) -> TxResult:
        return self._send(self.function("finalizeBreach", escrow_id, breach_id), sender)

    def reclaim_expired(self, escrow_id: int, sender: Sender) -> TxResult:
        return self._send(self.function("reclaimExpired", escrow_id), sender)

    def withdraw(self, token: str | None, sender: Sender) -> TxResult:
        fn = self.contract.functions.withdraw(to_checksum_address(token or ZERO_ADDRESS))
        return self._send(fn, sender)

    # -------------------------------------------------------------- views

    def get_escrow(self, escrow_id: int, *, block: BlockIdentifier = "latest") -> EscrowView:
        return EscrowView.from_abi(call(self.contract.functions.getEscrow(escrow_id), block=block))

    def get_milestone(
        self, escrow_id: int, milestone: int, *, block: BlockIdentifier = "latest"
    ) -> MilestoneView:
        state, since = call(self.contract.functions.getMilestone(escrow_id, milestone), block=block)
        return MilestoneView(MilestoneState(state), int(since))

    def get_breach(
        self, escrow_id: int, breach_id: int, *, block: BlockIdentifier = "latest"
    ) -> BreachView:
        return BreachView.from_abi(
            call(self.contract.functions.getBreach(escrow_id, breach_id), block=block)
        )

    def credits(
        self, account: str, token: str | None = None, *, block: BlockIdentifier = "latest"
    ) -> int:
        fn = self.contract.functions.credits(
            to_checksum_address(account), to_checksum_address(token or ZERO_ADDRESS)
        )
        return int(call(fn, block=block))

    def params_hash(self, escrow_id: int) -> bytes:
        return bytes(call(self.contract.functions.paramsHash(escrow_id)))

    def hash_params(self, params: EscrowParams) -> bytes:
        return bytes(call(self.contract.functions.hashParams(params.to_abi())))

    def escrow_count(self) -> int:
        return int(call(self.contract.functions.escrowCount()))

    def domain_separator(self) -> bytes:
        return bytes(call(self.contract.functions.DOMAIN_SEPARATOR()))

    def confirmation_digest(self, confirmation: Confirmation) -> bytes:
        fn = self.contract.functions.confirmationDigest(
            confirmation.escrow_id,
            confirmation.milestone,
            confirmation.rating,
            _b32(confirmation.comment_hash),
            confirmation.deadline,
        )
        return bytes(call(fn))

    def confirmation(
        self,
        escrow_id: int,
        milestone: int,
        rating: int,
        comment_hash: bytes | str | None,
        deadline: int,
    ) -> Confirmation:
        return Confirmation(escrow_id, milestone, rating, _b32(comment_hash), deadline)

    def typed_data(self, confirmation: Confirmation) -> dict[str, Any]:
        return confirmation.typed_data(self.chain_id, self.address)
