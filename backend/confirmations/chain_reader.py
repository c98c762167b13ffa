"""What the confirmation checks read from the chain (and the index), behind one small interface so
that the checks themselves stay plain functions. Node reads go through `from_node`: a node that
does not answer is a 503 `NodeUnavailable`; reverts pass through."""

from __future__ import annotations

from typing import Protocol

from eth_typing import ChecksumAddress
from sqlalchemy.orm import Session

from backend.chain import erc1271
from backend.chain.errors import EscrowUnknown, from_node
from backend.chain.types import EscrowParams, EscrowView, MilestoneView, Status
from backend.db.models import EscrowRow
from backend.errors import NotFoundError
from backend.index.indexer import escrow_ledger
from backend.index.ledger import EscrowLedger
from backend.services import Services


class ChainReader(Protocol):
    """The chain as the confirmation checks see it."""

    chain_id: int
    contract: ChecksumAddress

    def now(self) -> int: ...

    def params(self, escrow_id: int) -> EscrowParams: ...

    def ledger(self, escrow_id: int) -> EscrowLedger | None: ...

    def escrow(self, escrow_id: int) -> EscrowView: ...

    def milestone(self, escrow_id: int, milestone: int) -> MilestoneView: ...

    def has_code(self, address: str) -> bool: ...

    def erc1271_accepts(self, wallet: str, digest: bytes, signature: bytes) -> bool: ...


class Web3ChainReader:
    """`ChainReader` over the service's node connection and its indexed events."""

    def __init__(self, services: Services, session: Session) -> None:
        self.services = services
        self.session = session
        self.chain_id = services.chain_id
        self.contract = services.escrow.address

    def now(self) -> int:
        """A lower bound of the next block's time: the later of chain and service time
        (`Clock.now`)."""
        return self.services.clock.now()

    def params(self, escrow_id: int) -> EscrowParams:
        """From the indexed `EscrowCreated`, or from the node's logs when not indexed yet."""
        row = self.session.get(EscrowRow, (self.chain_id, escrow_id))
        if row is not None:
            return EscrowParams.from_json(row.params)
        try:
            return from_node("escrow parameters", lambda: self.services.escrow.params(escrow_id))
        except EscrowUnknown as exc:
            raise NotFoundError("escrow", escrow_id) from exc

    def ledger(self, escrow_id: int) -> EscrowLedger | None:
        return escrow_ledger(self.session, self.chain_id, escrow_id)

    def escrow(self, escrow_id: int) -> EscrowView:
        """The contract's `getEscrow` now: status, locked, nominal, counts."""
        return from_node("escrow", lambda: self.services.escrow.get_escrow(escrow_id))

    def escrow_status(self, escrow_id: int) -> Status:
        return self.escrow(escrow_id).status

    def milestone(self, escrow_id: int, milestone: int) -> MilestoneView:
        return from_node(
            "milestone", lambda: self.services.escrow.get_milestone(escrow_id, milestone)
        )

    def has_code(self, address: str) -> bool:
        return erc1271.has_code(self.services.w3, address)

    def erc1271_accepts(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        """The wallet's own verdict (`backend.chain.erc1271.is_valid_signature`)."""
        return erc1271.is_valid_signature(self.services.w3, wallet, digest, signature)
