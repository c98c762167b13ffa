"""The oracle's submitter: sends each outbox row's `reportBreach` exactly once, then its
`finalizeBreach` once the challenge period is over. A `Sender` (`backend/outbox/sender.py`,
where the crash-safety protocol is explained; gas capped by `ESCROW_REPORT_MAX_GAS` and
`ESCROW_FINALIZE_MAX_GAS`); what is its own:

* a report that would reserve nothing (`outbox.reserve_bounds` on the chain's `getEscrow` now:
  the refund cap used up, nothing locked, or the kind's refund rounding to 0) is not sent: its
  row is recorded `off_chain` with the reason, its evidence bundle kept, and no gas is paid; one
  that may or may not reserve something depending on the escrow's reports still in flight waits
  for them to settle;
* a report the contract already holds (`EscrowBreachAlreadyReported`, or its `BreachReported`
  indexed and the chain's `getBreach` agreeing) counts as mined, with the breach id found on the
  chain, and uses no nonce; an indexed report the chain no longer has (the index has not caught
  up with a reorg yet) is sent;
* a mined report is followed up (`prepare`) by what the chain says now, never by a stored row:
  a report the provider challenged is watched until the arbiter settles it, one already
  finalized (by anyone) counts as done, an unchallenged one gets its `finalizeBreach` (the
  second phase, whose hook steps are `FINALIZE_STEPS`) once the chain's time is past the
  challenge period, and one the chain no longer has (a reorg deeper than
  `ESCROW_CONFIRMATIONS` took it away) is queued again and reported anew.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from web3.logs import DISCARD
from web3.types import TxReceipt

from backend.chain.errors import ChainError
from backend.chain.revert_types import EscrowBreachAlreadyReported, EscrowWindowOpen
from backend.chain.types import BreachKind, BreachState, BreachView
from backend.db.models import BreachSubmission
from backend.oracle import outbox
from backend.oracle.findings import kind_name
from backend.oracle.outbox import (
    CHALLENGED,
    DONE,
    FAILED,
    FINALIZE_SENT,
    FINALIZE_SIGNED,
    FOLLOW_FAILED,
    MINED,
    NONE,
    OFF_CHAIN,
    PENDING,
    RESOLVED,
    SENT,
    SIGNED,
    STATUSES,
)
from backend.outbox.sender import MINED as TX_MINED
from backend.outbox.sender import REORGED, STEPS, Hook, Phase, Sender, SendReport
from backend.outbox.spend import spent

__all__ = ["FINALIZE", "FINALIZE_STEPS", "REPORT", "STEPS", "Hook", "Submitter"]

logger = logging.getLogger(__name__)

#: the report, whose state is the row's `status`
REPORT = Phase(
    "report", "status", "report_tx_id", PENDING, SIGNED, SENT, FAILED,
    gas_setting="report_max_gas",
)
#: its finalization, whose state is the row's `follow_up`
FINALIZE = Phase(
    "finalize", "follow_up", "finalize_tx_id", NONE, FINALIZE_SIGNED, FINALIZE_SENT,
    FOLLOW_FAILED, prefix="finalize_", gas_setting="finalize_max_gas",
)
#: the step boundaries of a finalization
FINALIZE_STEPS = tuple(FINALIZE.prefix + s for s in STEPS)

_SETTLED = (
    BreachState.FINALIZED, BreachState.UPHELD, BreachState.REJECTED, BreachState.STALE_SPLIT
)
_ALREADY = "already reported on chain"


class Submitter(Sender[BreachSubmission]):
    """Sends the oracle outbox of one chain from the oracle account."""

    name: ClassVar[str] = "oracle"
    model = BreachSubmission
    phases = (REPORT, FINALIZE)
    statuses = STATUSES
    interval: ClassVar[float] = 5.0
    #: a report's `build` reads its escrow's reports in flight (`_reserves_something`): each is
    #: signed before the next is built
    sign_together: ClassVar[int] = 1

    def due(self, session: Session) -> list[int]:
        return self.row_ids(
            session, BreachSubmission.oracle == self.address, BreachSubmission.status == PENDING
        )

    def prepare(self, report: SendReport) -> None:
        self.follow_up(report)

    def over_budget(
        self, session: Session, row: BreachSubmission, phase: Phase, cost: int
    ) -> str | None:
        """Past `ESCROW_ORACLE_MAX_SPEND_PER_ESCROW` (wei; `backend/outbox/spend.py` counts):
        terms that make tiny refunds in many periods cannot make the oracle pay without end.
        Only new reports are bounded: a mined report's finalization always goes out (else the
        gas of the report was paid for a refund left reserved)."""
        bound = self.services.settings.oracle_max_spend_per_escrow
        if bound is None or phase is not REPORT:
            return None
        so_far = spent(session, self.chain_id, self.name, escrow_id=row.escrow_id)
        if so_far + cost <= bound:
            return None
        return (
            f"oracle spend bound reached for escrow {row.escrow_id}: {so_far} wei spent or "
            f"committed + up to {cost} wei for this transaction > "
            f"ESCROW_ORACLE_MAX_SPEND_PER_ESCROW {bound} wei; nothing was signed"
        )

    # ----------------------------------------------------------------- the calls

    def build(
        self, session: Session, row: BreachSubmission, phase: Phase, report: SendReport
    ) -> Any:
        escrow = self.services.escrow
        if phase is FINALIZE:
            if row.breach_id is None or not self.remember_escrow(
                session, row, phase, row.escrow_id, report
            ):
                return None
            return escrow.function("finalizeBreach", row.escrow_id, row.breach_id)
        known = outbox.indexed_breach_id(
            session, self.chain_id, row.escrow_id, row.kind, row.period
        )
        if known is not None and self._on_chain(row, known) is not None:
            self._mined(row, known, _ALREADY)
            report.mined += 1
            return None
        if not self.remember_escrow(session, row, phase, row.escrow_id, report):
            return None
        if not self._reserves_something(session, row):
            return None
        return escrow.function(
            "reportBreach", row.escrow_id, row.kind, row.period,
            bytes.fromhex(row.evidence_hash.removeprefix("0x")),
        )

    def refused(
        self, row: BreachSubmission, phase: Phase, error: ChainError, report: SendReport
    ) -> None:
        if phase is FINALIZE and isinstance(error, EscrowWindowOpen):
            return  # the next block is not late enough yet
        if phase is REPORT and isinstance(error, EscrowBreachAlreadyReported):
            self._mined(row, self._chain_breach_id(row), _ALREADY)
            report.mined += 1
            return
        super().refused(row, phase, error, report)

    def _reserves_something(self, session: Session, row: BreachSubmission) -> bool:
        """Whether the row's report would reserve something (`outbox.reserve_bounds`, from the
        chain's `getEscrow` now and the escrow's other reports in flight). When it surely
        would not, ever (its kind's refund rounds to 0, or refunds alone used up the cap or
        what was locked), the row is recorded `off_chain` with the reason (never sent, no
        gas); when it depends on reports in flight or on open reports, whose reserves come
        back if they are decided for the provider, the row stays pending until they settle. A
        kind the contract does not know goes on to the simulation, which decodes its
        refusal."""
        if row.kind not in set(BreachKind):
            return True
        params = self.escrow_params(session, row.escrow_id)
        view = self.services.escrow.get_escrow(row.escrow_id)
        in_flight = session.scalars(
            select(BreachSubmission.kind).where(
                BreachSubmission.chain_id == self.chain_id,
                BreachSubmission.escrow_id == row.escrow_id,
                BreachSubmission.oracle == self.address,
                BreachSubmission.status.in_((SIGNED, SENT)),
                BreachSubmission.id != row.id,
            ).order_by(BreachSubmission.id)
        ).all()
        least, most = outbox.reserve_bounds(params, view, row.kind, in_flight)
        if least > 0:
            return True
        if most > 0:
            return False  # decided once the reports in flight settle
        if view.reserved > 0 and outbox.kind_share(params, row.kind) > 0:
            # open reports hold the cap (or all that is locked): one challenged and decided
            # for the provider gives its reserve back, so this one waits until they settle
            return False
        reason = outbox.nothing_reserved_reason(params, view, row.kind)
        self.move(row, REPORT, OFF_CHAIN, reason)
        fields = self.log_fields(row)
        fields.update(kind_name=kind_name(row.kind), evidence_hash=row.evidence_hash)
        logger.info(
            "oracle recorded breach of escrow %s (%s, period %s) off-chain: %s", row.escrow_id,
            fields["kind_name"], row.period, reason,
            extra={"event": "breach_recorded_off_chain", **fields},
        )
        return False

    def _chain_breach_id(self, row: BreachSubmission) -> int | None:
        """The breach id of the (kind, period) report on the chain, from its logs."""
        for _, args in self.services.escrow.events_of(row.escrow_id, "BreachReported"):
            if int(args["kind"]) == row.kind and int(args["period"]) == row.period:
                return int(args["breachId"])
        return None

    def _on_chain(self, row: BreachSubmission, breach_id: int) -> BreachView | None:
        """Breach `breach_id` of the row's escrow as the chain holds it now, if it is the row's
        (kind, period) report; None when the chain has no such report."""
        breach = self.services.escrow.get_breach(row.escrow_id, breach_id)
        if breach.state == BreachState.NONE or (breach.kind, breach.period) != (
            row.kind, row.period
        ):
            return None
        return breach

    def _mined(self, row: BreachSubmission, breach_id: int | None, note: str | None) -> None:
        row.breach_id = breach_id
        self.move(row, REPORT, MINED, note)
        self._log_breach("breach_reported", "reported", row, note)

    def _log_breach(
        self, event: str, what: str, row: BreachSubmission, note: str | None = None
    ) -> None:
        """`breach_reported` / `breach_finalized`: the chain holds the row's report (or its
        finalization) now, with the breach id, the kind's name and the transaction."""
        tx = row.finalize_tx if event == "breach_finalized" else row.report_tx
        fields = self.log_fields(row, tx)
        fields.update(kind_name=kind_name(row.kind), evidence_hash=row.evidence_hash)
        logger.info(
            "oracle %s breach %s of escrow %s (%s, period %s)%s%s", what, row.breach_id,
            row.escrow_id, fields["kind_name"], row.period,
            "" if tx is None or note else f" in {tx.tx_hash}", f": {note}" if note else "",
            extra={"event": event, **fields},
        )

    # ----------------------------------------------------------------- follow up

    def follow_up(self, report: SendReport) -> None:
        """Mined reports, by the chain's `getBreach` now: watch a challenge until it is
        settled; finalize an unchallenged one once its challenge period is over; report again
        one the chain no longer has."""
        with self.session() as session:
            ids = self.row_ids(
                session,
                BreachSubmission.oracle == self.address,
                BreachSubmission.status == MINED,
                BreachSubmission.follow_up.in_((NONE, CHALLENGED)),
            )
        for row_id in ids:
            with self.session() as session:
                row = session.get(BreachSubmission, row_id)
                if row is None or row.breach_id is None:
                    continue
                params = self.escrow_params(session, row.escrow_id)
            breach = self._on_chain(row, row.breach_id)
            if breach is None:
                self._report_again(row_id, report)
                continue
            if breach.state in _SETTLED:
                done = breach.state == BreachState.FINALIZED and row.follow_up == NONE
                self._set_follow_up(row_id, DONE if done else RESOLVED, report)
            elif breach.state == BreachState.CHALLENGED:
                if row.follow_up != CHALLENGED:
                    self._set_follow_up(row_id, CHALLENGED, report)
            elif row.follow_up == NONE:
                ends_at = breach.reported_at + params.terms.challenge_period
                if self.clock.chain_time() > ends_at:
                    self.sign(row_id, FINALIZE, report)

    def _report_again(self, row_id: int, report: SendReport) -> None:
        """The chain no longer holds the row's report, final as it was (a reorg deeper than
        `ESCROW_CONFIRMATIONS`): its transaction is marked `reorged` and the row goes back to
        `pending`, to be simulated and signed anew (linked to the old transaction)."""
        with self.session() as session, session.begin():
            row = self.lock(session, row_id)
            if row is None or row.status != MINED or row.follow_up not in (NONE, CHALLENGED):
                return
            if row.report_tx is not None and row.report_tx.status == TX_MINED:
                row.report_tx.status = REORGED
                row.report_tx.error = "no longer on the chain (reorg)"
                row.report_tx.updated_at = self.clock.service_time()
            logger.warning("oracle report %s (escrow %s kind %s period %s) left the chain; "
                           "reporting it again", row.id, row.escrow_id, row.kind, row.period)
            row.breach_id = None
            row.follow_up = NONE
            self.move(row, REPORT, PENDING, "the report left the chain (reorg); reporting again")
            report.requeued += 1

    def _set_follow_up(self, row_id: int, follow_up: str, report: SendReport) -> None:
        with self.session() as session, session.begin():
            row = self.lock(session, row_id)
            if row is None or row.follow_up not in (NONE, CHALLENGED):
                return
            self.move(row, FINALIZE, follow_up, None)
            report.followed += 1

    # ----------------------------------------------------------------- settle

    def settled(
        self, row: BreachSubmission, phase: Phase, receipt: TxReceipt,
        error: ChainError | None, report: SendReport,
    ) -> None:
        if phase is FINALIZE:
            self._settle_finalize(row, error, report)
        elif error is None:
            events = self.services.escrow.contract.events.BreachReported().process_receipt(
                receipt, errors=DISCARD
            )
            self._mined(row, int(events[0]["args"]["breachId"]), None)
            report.mined += 1
        elif isinstance(error, EscrowBreachAlreadyReported):
            self._mined(row, self._chain_breach_id(row), _ALREADY)
            report.mined += 1
        else:
            self.fail(row, phase, error)
            report.failed += 1

    def _settle_finalize(
        self, row: BreachSubmission, error: ChainError | None, report: SendReport
    ) -> None:
        """A reverted finalization may have lost a race: the breach's state on the chain says
        whether it is done anyway (finalized by someone else), watched (challenged) or over."""
        if error is None:
            self.move(row, FINALIZE, DONE, None)
            self._log_breach("breach_finalized", "finalized", row)
            report.followed += 1
            return
        assert row.breach_id is not None
        state = self.services.escrow.get_breach(row.escrow_id, row.breach_id).state
        if state == BreachState.FINALIZED:
            self.move(row, FINALIZE, DONE, None)
        elif state == BreachState.CHALLENGED:
            self.move(row, FINALIZE, CHALLENGED, None)
        elif state in _SETTLED:
            self.move(row, FINALIZE, RESOLVED, None)
        else:
            self.fail(row, FINALIZE, error)
            report.failed += 1
            return
        report.followed += 1

