"""What the confirmation checks read from the chain (and the index), behind one small interface so
that the checks themselves stay plain functions. Node reads go through `from_node`: a node that
does not answer is a 503 `NodeUnavailable`; reverts pass through."""

from __future__ import annotations

from typing import Protocol

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from sqlalchemy.orm import Session

from backend.chain import erc1271
from backend.chain.eip712 import Confirmation
from backend.chain.errors import EscrowUnknown, from_node
from backend.chain.keys import relayer_account
from backend.chain.transactions import estimate_within
from backend.chain.types import EscrowParams, EscrowView, MilestoneView, Status
from backend.db.models import EscrowRow
from backend.errors import ConfigurationError, NotFoundError
from backend.index.indexer import escrow_ledger
from backend.index.ledger import EscrowLedger
from backend.services import Services


class ChainReader(Protocol):
    """The chain as the confirmation checks see it."""

    chain_id: int
    contract: ChecksumAddress
    #: `ESCROW_RELAY_MAX_GAS`: the most gas the relayer gives a `confirmWithSig`
    relay_max_gas: int

    def now(self) -> int: ...

    def params(self, escrow_id: int) -> EscrowParams: ...

    def ledger(self, escrow_id: int) -> EscrowLedger | None: ...

    def escrow(self, escrow_id: int) -> EscrowView: ...

    def milestone(self, escrow_id: int, milestone: int) -> MilestoneView: ...

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


class Web3ChainReader:
    """`ChainReader` over the service's node connection and its indexed events."""

    def __init__(self, services: Services, session: Session) -> None:
        self.services = services
        self.session = session
        self.chain_id = services.chain_id
        self.contract = services.escrow.address
        self.relay_max_gas = services.settings.relay_max_gas

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
