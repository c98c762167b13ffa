"""The relayer: sends each accepted confirmation's `confirmWithSig` exactly once, from the relayer
account. A `Sender` (`backend/outbox/sender.py`, where the crash-safety protocol, fee
replacements and reorg handling are explained); what is its own is which rows are due, the call,
what a mined one means, and the deadline the client signed: once the chain's time is past it, an
unmined `confirmWithSig` can only revert, so the sender stops raising its fees and fills its
nonce with a no-op, and the request fails with "deadline passed while unmined; sign again"."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy.orm import Session
from web3.types import TxReceipt

from backend.chain.errors import ChainError
from backend.confirmations.outbox import FAILED, MINED, PENDING, SENT, SIGNED, STATUSES
from backend.db.models import ConfirmationRequest
from backend.outbox.sender import STEPS, Hook, Phase, Sender, SendReport

__all__ = ["CONFIRM", "STEPS", "Hook", "Relayer"]

#: the one transaction of a confirmation request
CONFIRM = Phase("confirm", "status", "transaction_id", PENDING, SIGNED, SENT, FAILED)


class Relayer(Sender[ConfirmationRequest]):
    """Relays the confirmation outbox of one chain from the relayer account."""

    name: ClassVar[str] = "relayer"
    model = ConfirmationRequest
    phases = (CONFIRM,)
    statuses = STATUSES

    def due(self, session: Session) -> list[int]:
        return self.row_ids(session, ConfirmationRequest.status == PENDING)

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

    def settled(
        self, row: ConfirmationRequest, phase: Phase, receipt: TxReceipt,
        error: ChainError | None, report: SendReport,
    ) -> None:
        if error is None:
            self.move(row, phase, MINED, None)
            report.mined += 1
        else:
            self.fail(row, phase, error)
            report.failed += 1
