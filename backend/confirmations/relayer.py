"""The relayer: sends each accepted confirmation's `confirmWithSig` exactly once, from the relayer
account. A `Sender` (`backend/outbox/sender.py`, where the crash-safety protocol, fee
replacements, reorg handling, the gas cap and refusals for good are explained); what is its own
is which rows are due, the call, what a mined one means, and the deadline the client signed:
once the chain's time is past it, an unmined `confirmWithSig` can only revert, so the sender
stops raising its fees and fills its nonce with a no-op, and the request fails with "deadline
passed while unmined; sign again".

Also its own:

* the gas cap `ESCROW_RELAY_MAX_GAS`: a confirmation whose call needs more (a contract wallet
  that burns gas when the escrow asks it) fails alone, nothing signed;
* the spend bounds `ESCROW_RELAY_MAX_SPEND_PER_ESCROW` and `..._PER_CLIENT` (wei, counted by
  `backend/outbox/spend.py` over the transactions sent for the escrow, or for the client, the
  escrow's `client` who signed): a confirmation whose transaction could pass one fails with the
  figures, nothing signed;
* a front-run relay: anyone may submit `confirmWithSig` with the client's signature. When the
  relayer's call reverts (in simulation or mined) and the chain's `MilestoneSettled` of the
  milestone says it was settled by signature (`how` = signed) with the request's rating and
  comment hash in another transaction, the request is `settled`, not failed: the client's
  confirmation is on the chain.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from eth_typing import HexStr
from sqlalchemy.orm import Session
from web3.types import TxReceipt

from backend.chain.errors import ChainError
from backend.chain.revert_types import EscrowInvalidSignature
from backend.chain.transactions import PROBE_FACTOR
from backend.chain.types import SettledHow
from backend.confirmations.outbox import (
    FAILED,
    MINED,
    PENDING,
    SENT,
    SETTLED,
    SIGNED,
    STATUSES,
)
from backend.db.models import ConfirmationRequest
from backend.outbox.nonce import has_in_flight
from backend.outbox.sender import STEPS, Hook, Phase, Sender, SendReport
from backend.outbox.spend import spent

__all__ = ["CONFIRM", "STEPS", "Hook", "Relayer"]

logger = logging.getLogger(__name__)

#: the one transaction of a confirmation request
CONFIRM = Phase(
    "confirm", "status", "transaction_id", PENDING, SIGNED, SENT, FAILED,
    gas_setting="relay_max_gas",
)


class Relayer(Sender[ConfirmationRequest]):
    """Relays the confirmation outbox of one chain from the relayer account."""

    name: ClassVar[str] = "relayer"
    model = ConfirmationRequest
    phases = (CONFIRM,)
    statuses = STATUSES
    #: a client waits for the relay: an idle relayer looks for new confirmations five times a
    #: second, in the database only (`has_work`)
    interval: ClassVar[float] = 0.2

    def due(self, session: Session) -> list[int]:
        return self.row_ids(session, ConfirmationRequest.status == PENDING)

    def has_work(self) -> bool:
        """A confirmation to sign, or a transaction of the relayer's in flight (two indexed
        queries; the node is asked nothing when there is neither)."""
        with self.session() as session:
            return bool(self.due(session)) or has_in_flight(
                session, self.chain_id, self.address
            )

    def build(
        self, session: Session, row: ConfirmationRequest, phase: Phase, report: SendReport
    ) -> Any:
        if not self.remember_escrow(session, row, phase, row.escrow_id, report):
            return None
        return self.services.escrow.function(
            "confirmWithSig",
            row.escrow_id,
            row.milestone,
            row.rating,
            bytes.fromhex(row.comment_hash.removeprefix("0x")),
            row.deadline,
            bytes.fromhex(row.signature.removeprefix("0x")),
        )

    def deadline(self, row: ConfirmationRequest, phase: Phase) -> int | None:
        return row.deadline

    def scope(self, row: ConfirmationRequest) -> tuple[int | None, str | None]:
        """The escrow, and the client who signed (`signer`: the escrow's client, a key or a
        contract wallet)."""
        return row.escrow_id, row.signer

    def over_budget(
        self, session: Session, row: ConfirmationRequest, phase: Phase, cost: int
    ) -> str | None:
        settings = self.services.settings
        bounds = (
            ("escrow", f"escrow {row.escrow_id}", settings.relay_max_spend_per_escrow,
             "ESCROW_RELAY_MAX_SPEND_PER_ESCROW", {"escrow_id": row.escrow_id}),
            ("client", f"client {row.signer}", settings.relay_max_spend_per_client,
             "ESCROW_RELAY_MAX_SPEND_PER_CLIENT", {"on_behalf_of": row.signer}),
        )
        for _, whom, bound, setting, scope in bounds:
            if bound is None:
                continue
            so_far = spent(session, self.chain_id, self.name, **scope)
            if so_far + cost > bound:
                return (
                    f"relay spend bound reached for {whom}: {so_far} wei spent or committed "
                    f"+ up to {cost} wei for this transaction > {setting} {bound} wei; "
                    "nothing was signed"
                )
        return None

    def refused(
        self, row: ConfirmationRequest, phase: Phase, error: ChainError, report: SendReport
    ) -> None:
        if self._settled_by_other(row, None):
            report.mined += 1
            return
        if isinstance(error, EscrowInvalidSignature) and self.gas_cap(phase) is not None:
            cap = int(self.gas_cap(phase) or 0)
            error.message = (
                f"{error.message} (simulated from the relayer with at most "
                f"{cap * PROBE_FACTOR:,} gas: the client's wallet refused the signature, or "
                f"needs more gas than that to answer; ESCROW_RELAY_MAX_GAS is {cap:,})"
            )
        super().refused(row, phase, error, report)

    def settled(
        self, row: ConfirmationRequest, phase: Phase, receipt: TxReceipt,
        error: ChainError | None, report: SendReport,
    ) -> None:
        if error is None:
            self.move(row, phase, MINED, None)
            report.mined += 1
        elif self._settled_by_other(row, "0x" + bytes(receipt["transactionHash"]).hex()):
            report.mined += 1
        else:
            self.fail(row, phase, error)
            report.failed += 1

    def _settled_by_other(self, row: ConfirmationRequest, ours: str | None) -> bool:
        """Whether another account's transaction (not `ours`, not any sent from the relayer's
        address) settled the row's milestone by signature with the row's rating and comment
        hash, at least `ESCROW_CONFIRMATIONS` deep (a front-run relay of the client's
        confirmation); if so the row is moved to `settled`, naming that transaction."""
        escrow = self.services.escrow
        settled = escrow.events_of(row.escrow_id, "MilestoneSettled", depth=self.confirmations)
        for tx_hash, args in settled:
            if (
                int(args["milestone"]) == row.milestone
                and int(args["how"]) == SettledHow.SIGNED
                and int(args["rating"]) == row.rating
                and args["commentHash"] == row.comment_hash.lower()
                and tx_hash != ours
                # not one of the relayer's own versions (re-mined after a reorg)
                and escrow.w3.eth.get_transaction(HexStr(tx_hash))["from"].lower()
                != self.address.lower()
            ):
                note = (
                    f"settled by transaction {tx_hash} of another sender, carrying the client's "
                    f"signed confirmation (rating {row.rating}) before the relayer's"
                )
                self.move(row, CONFIRM, SETTLED, note)
                logger.info(
                    "relayer row %s (escrow %s milestone %s) %s", row.id, row.escrow_id,
                    row.milestone, note,
                    extra={"event": "confirmation_settled_by_other",
                           **self.log_fields(row), "settled_by": tx_hash},
                )
                return True
        return False
