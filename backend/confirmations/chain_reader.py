"""What the confirmation checks read from the chain (and the index), behind one small interface so
that the checks themselves stay plain functions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import requests
from eth_abi import encode as abi_encode
from eth_typing import ChecksumAddress
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from sqlalchemy.orm import Session
from web3.types import TxParams

from backend.chain.errors import EscrowUnknown
from backend.chain.transactions import REVERT_EXCEPTIONS
from backend.chain.types import EscrowParams, MilestoneView, Status
from backend.db.models import EscrowRow
from backend.errors import NotFoundError, UnavailableError
from backend.index.indexer import escrow_ledger
from backend.index.ledger import EscrowLedger
from backend.services import Services

#: ERC-1271: `isValidSignature(bytes32,bytes)` returns its own selector when the wallet agrees
ERC1271_MAGIC = function_signature_to_4byte_selector("isValidSignature(bytes32,bytes)")
#: gas an ERC-1271 wallet may use to answer (a Safe with a few owners needs far less)
ERC1271_GAS = 500_000

T = TypeVar("T")


class ChainReader(Protocol):
    """The chain as the confirmation checks see it."""

    chain_id: int
    contract: ChecksumAddress

    def now(self) -> int: ...

    def params(self, escrow_id: int) -> EscrowParams: ...

    def ledger(self, escrow_id: int) -> EscrowLedger | None: ...

    def escrow_status(self, escrow_id: int) -> Status: ...

    def milestone(self, escrow_id: int, milestone: int) -> MilestoneView: ...

    def has_code(self, address: str) -> bool: ...

    def erc1271_accepts(self, wallet: str, digest: bytes, signature: bytes) -> bool: ...


def _node(call: Callable[[], T]) -> T:
    """Runs a node request; a node that does not answer becomes a 503, reverts pass through."""
    try:
        return call()
    except (requests.RequestException, OSError, TimeoutError) as exc:
        raise UnavailableError("Ethereum node", str(exc)) from exc


class Web3ChainReader:
    """`ChainReader` over the service's node connection and its indexed events."""

    def __init__(self, services: Services, session: Session) -> None:
        self.services = services
        self.session = session
        self.chain_id = services.chain_id
        self.contract = services.escrow.address

    def now(self) -> int:
        """A lower bound of the next block's time: the latest block's, or the wall clock's."""
        latest = _node(lambda: int(self.services.w3.eth.get_block("latest")["timestamp"]))
        return max(latest, int(time.time()))

    def params(self, escrow_id: int) -> EscrowParams:
        """From the indexed `EscrowCreated`, or from the node's logs when not indexed yet."""
        row = self.session.get(EscrowRow, (self.chain_id, escrow_id))
        if row is not None:
            return EscrowParams.from_json(row.params)
        try:
            return _node(lambda: self.services.escrow.params(escrow_id))
        except EscrowUnknown as exc:
            raise NotFoundError("escrow", escrow_id) from exc

    def ledger(self, escrow_id: int) -> EscrowLedger | None:
        return escrow_ledger(self.session, self.chain_id, escrow_id)

    def escrow_status(self, escrow_id: int) -> Status:
        return _node(lambda: self.services.escrow.get_escrow(escrow_id)).status

    def milestone(self, escrow_id: int, milestone: int) -> MilestoneView:
        return _node(lambda: self.services.escrow.get_milestone(escrow_id, milestone))

    def has_code(self, address: str) -> bool:
        code = _node(lambda: self.services.w3.eth.get_code(to_checksum_address(address)))
        return len(code) > 0

    def erc1271_accepts(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        """Asks the wallet through eth_call, as OpenZeppelin's SignatureChecker does on-chain:
        the answer must be at least 32 bytes whose first word is the magic value."""
        data = ERC1271_MAGIC + abi_encode(["bytes32", "bytes"], [digest, signature])
        tx: TxParams = {"to": to_checksum_address(wallet), "data": data, "gas": ERC1271_GAS}
        try:
            answer = bytes(_node(lambda: self.services.w3.eth.call(tx)))
        except REVERT_EXCEPTIONS:
            return False
        return len(answer) >= 32 and answer[:32] == ERC1271_MAGIC.ljust(32, b"\x00")
