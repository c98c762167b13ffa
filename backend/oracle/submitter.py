"""Sends the oracle outbox: each row's `reportBreach` exactly once, then its `finalizeBreach`
once the challenge period is over, with the confirmation relayer's discipline
(backend/confirmations/relayer.py):

* a transaction is simulated and signed under the `sender_nonce` row lock, and its raw bytes and
  hash are stored (committed) before anything is broadcast; a simulated revert is decoded and
  recorded without using a nonce;
* only the stored bytes are ever broadcast again; "already known" / "nonce too low" are resolved
  by looking the transaction up by its hash;
* a mined revert is decoded by replaying the call.

A report the contract already holds (`EscrowBreachAlreadyReported`, or its `BreachReported`
indexed) counts as mined, with the breach id found on the chain. A report the provider challenged
is watched until the arbiter settles it; one already finalized counts as done.

A `hook(step, row)` runs at every step boundary (tests crash the worker there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

from eth_account.signers.local import LocalAccount
from sqlalchemy import or_
from sqlalchemy.orm import Session
from web3.logs import DISCARD
from web3.types import Nonce, TxParams, TxReceipt

from backend.chain.errors import ChainError, EscrowUnknown
from backend.chain.revert_types import EscrowBreachAlreadyReported, EscrowWindowOpen
from backend.chain.transactions import REVERT_EXCEPTIONS, as_chain_error
from backend.chain.types import BreachState, EscrowParams
from backend.confirmations.relayer import GAS_MARGIN, Relayer
from backend.db.models import BreachSubmission, EscrowRow
from backend.oracle import outbox
from backend.oracle.outbox import (
    CHALLENGED,
    DONE,
    FAILED,
    FINALIZE_SENT,
    FINALIZE_SIGNED,
    FOLLOW_FAILED,
    MINED,
    NONE,
    PENDING,
    RESOLVED,
    SENT,
    SIGNED,
)
from backend.services import Services

logger = logging.getLogger(__name__)

Hook = Callable[[str, BreachSubmission], None]
#: step boundaries of a report, in the order a row passes them
STEPS = ("signing", "signed", "broadcast", "sent", "receipt", "finished")
#: the same boundaries of its finalization
FINALIZE_STEPS = tuple(f"finalize_{s}" for s in STEPS)

_SETTLED = (
    BreachState.FINALIZED, BreachState.UPHELD, BreachState.REJECTED, BreachState.STALE_SPLIT
)


@dataclass(frozen=True)
class Phase:
    """Where one of the row's two transactions keeps its state and bytes."""

    prefix: str
    state_attr: str
    pending: str
    signed: str
    sent: str
    raw_attr: str
    hash_attr: str


REPORT = Phase("", "status", PENDING, SIGNED, SENT, "raw_tx", "tx_hash")
FINALIZE = Phase(
    "finalize_", "follow_up", NONE, FINALIZE_SIGNED, FINALIZE_SENT, "finalize_raw_tx",
    "finalize_tx_hash",
)


@dataclass
class SubmitReport:
    """What one pass did."""

    enqueued: int = 0
    signed: int = 0
    broadcast: int = 0
    mined: int = 0
    failed: int = 0
    requeued: int = 0
    followed: int = 0

    @property
    def busy(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def add(self, other: SubmitReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _state(row: BreachSubmission, phase: Phase) -> str:
    return cast(str, getattr(row, phase.state_attr))


class Submitter:
    """Sends the outbox of one chain from the oracle account (its only sender)."""

    def __init__(
        self,
        services: Services,
        account: LocalAccount,
        *,
        hook: Hook | None = None,
        confirmations: int | None = None,
    ) -> None:
        self.services = services
        self.w3 = services.w3
        self.account = account
        self.address = account.address
        self.chain_id = services.chain_id
        self.hook = hook
        self.confirmations = (
            services.settings.confirmations if confirmations is None else confirmations
        )
        # the relayer's broadcast / receipt / revert-replay helpers, which touch only the node
        self._node = Relayer(services, account, confirmations=self.confirmations)

    def run_once(self) -> SubmitReport:
        report = SubmitReport()
        self.sign_pending(report)
        self.follow_up(report)
        self.broadcast_signed(report)
        self.settle_sent(report)
        return report

    def _step(self, phase: Phase, name: str, row: BreachSubmission) -> None:
        if self.hook is not None:
            self.hook(phase.prefix + name, row)

    def _session(self) -> Session:
        return self.services.sessions()

    def _ids(self, *conditions: Any) -> list[int]:
        with self._session() as session:
            return outbox.ids_where(session, self.chain_id, self.address, *conditions)

    def _chain_nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(self.address, "pending"))

    # ----------------------------------------------------------------- 1. sign reports

    def sign_pending(self, report: SubmitReport) -> None:
        for row_id in self._ids(BreachSubmission.status == PENDING):
            with self._session() as session, session.begin():
                nonce_row = outbox.take_nonce(
                    session, self.chain_id, self.address, self._chain_nonce()
                )
                row = outbox.lock_row(session, row_id)
                if row is None or row.status != PENDING:
                    continue
                outcome = self._sign_report(session, row, nonce_row.next_nonce)
                if outcome == "signed":
                    nonce_row.next_nonce += 1
                    report.signed += 1
                elif outcome == "done":
                    report.mined += 1
                else:
                    report.failed += 1
                self._step(REPORT, "signing", row)
            if row.status == SIGNED:
                self._step(REPORT, "signed", row)

    def _params(self, session: Session, escrow_id: int) -> EscrowParams:
        indexed = session.get(EscrowRow, (self.chain_id, escrow_id))
        if indexed is not None:
            return EscrowParams.from_json(indexed.params)
        return self.services.escrow.params(escrow_id)

    def _sign_report(
        self, session: Session, row: BreachSubmission, nonce: int
    ) -> Literal["signed", "done", "failed"]:
        known = outbox.indexed_breach_id(
            session, self.chain_id, row.escrow_id, row.kind, row.period
        )
        if known is not None:
            self._mined(row, known, "already reported on chain")
            return "done"
        escrow = self.services.escrow
        try:
            escrow.remember(row.escrow_id, self._params(session, row.escrow_id))
        except EscrowUnknown as exc:
            self._fail(row, exc)
            return "failed"
        fn = escrow.function(
            "reportBreach", row.escrow_id, row.kind, row.period,
            bytes.fromhex(row.evidence_hash.removeprefix("0x")),
        )
        try:
            self._sign(row, REPORT, fn, nonce)
        except REVERT_EXCEPTIONS as exc:
            error = as_chain_error(exc)
            if isinstance(error, EscrowBreachAlreadyReported):
                self._mined(row, self._chain_breach_id(row), "already reported on chain")
                return "done"
            self._fail(row, error)
            return "failed"
        row.nonce = nonce
        return "signed"

    def _sign(self, row: BreachSubmission, phase: Phase, fn: Any, nonce: int) -> None:
        """Simulates (raising the revert) and signs; stores the bytes and hash on the row."""
        gas = int(fn.estimate_gas({"from": self.address}))
        params: TxParams = {
            "from": self.address,
            "nonce": Nonce(nonce),
            "gas": int(gas * GAS_MARGIN),
            "chainId": self.chain_id,
        }
        tx = fn.build_transaction(params)
        signed = self.account.sign_transaction(cast(dict[str, Any], tx))
        setattr(row, phase.raw_attr, _hex(signed.raw_transaction))
        setattr(row, phase.hash_attr, _hex(signed.hash))
        self._move(row, phase, phase.signed, None)

    def _chain_breach_id(self, row: BreachSubmission) -> int | None:
        """The breach id of the (kind, period) report on the chain, from its logs."""
        logs = self.services.escrow.contract.events.BreachReported.get_logs(
            from_block=self.services.deployment_block,
            to_block="latest",
            argument_filters={"escrowId": row.escrow_id},
        )
        for log in logs:
            args = log["args"]
            if int(args["kind"]) == row.kind and int(args["period"]) == row.period:
                return int(args["breachId"])
        return None

    # ----------------------------------------------------------------- 2. follow up

    def follow_up(self, report: SubmitReport) -> None:
        """Mined reports: watch a challenge until it is settled; finalize an unchallenged one
        once its challenge period is over."""
        ids = self._ids(BreachSubmission.status == MINED,
                        BreachSubmission.follow_up.in_((NONE, CHALLENGED)))
        for row_id in ids:
            with self._session() as session:
                row = session.get(BreachSubmission, row_id)
                if row is None or row.breach_id is None:
                    continue
                events = outbox.indexed_breach_events(
                    session, self.chain_id, row.escrow_id, row.breach_id
                )
                params = self._params(session, row.escrow_id)
            breach = self.services.escrow.get_breach(row.escrow_id, row.breach_id)
            settled = "BreachSettled" in events or breach.state in _SETTLED
            if settled:
                done = breach.state == BreachState.FINALIZED and row.follow_up == NONE
                self._set_follow_up(row_id, DONE if done else RESOLVED, report)
            elif "BreachChallenged" in events or breach.state == BreachState.CHALLENGED:
                if row.follow_up != CHALLENGED:
                    self._set_follow_up(row_id, CHALLENGED, report)
            elif row.follow_up == NONE:
                ends_at = breach.reported_at + params.terms.challenge_period
                now = int(self.w3.eth.get_block("latest")["timestamp"])
                if now > ends_at:
                    self._sign_finalize(row_id, params, report)

    def _set_follow_up(self, row_id: int, follow_up: str, report: SubmitReport) -> None:
        with self._session() as session, session.begin():
            row = outbox.lock_row(session, row_id)
            if row is None or row.follow_up not in (NONE, CHALLENGED):
                return
            self._move(row, FINALIZE, follow_up, None)
            report.followed += 1

    def _sign_finalize(self, row_id: int, params: EscrowParams, report: SubmitReport) -> None:
        with self._session() as session, session.begin():
            nonce_row = outbox.take_nonce(
                session, self.chain_id, self.address, self._chain_nonce()
            )
            row = outbox.lock_row(session, row_id)
            if row is None or row.follow_up != NONE or row.breach_id is None:
                return
            escrow = self.services.escrow
            escrow.remember(row.escrow_id, params)
            fn = escrow.function("finalizeBreach", row.escrow_id, row.breach_id)
            try:
                self._sign(row, FINALIZE, fn, nonce_row.next_nonce)
            except REVERT_EXCEPTIONS as exc:
                error = as_chain_error(exc)
                if isinstance(error, EscrowWindowOpen):
                    return  # the next block is not late enough yet
                logger.warning("finalizing breach submission %s failed: %s", row.id, error)
                self._move(row, FINALIZE, FOLLOW_FAILED, error.message)
                report.failed += 1
                return
            nonce_row.next_nonce += 1
            report.signed += 1
            self._step(FINALIZE, "signing", row)
        self._step(FINALIZE, "signed", row)

    # ----------------------------------------------------------------- 3. broadcast

    def _phase(self, row: BreachSubmission, signed: bool) -> Phase | None:
        for phase in (REPORT, FINALIZE):
            if _state(row, phase) == (phase.signed if signed else phase.sent):
                return phase
        return None

    def broadcast_signed(self, report: SubmitReport) -> None:
        ids = self._ids(
            or_(BreachSubmission.status == SIGNED, BreachSubmission.follow_up == FINALIZE_SIGNED)
        )
        for row_id in ids:
            with self._session() as session:
                row = session.get(BreachSubmission, row_id)
            phase = None if row is None else self._phase(row, signed=True)
            if row is None or phase is None:
                continue
            outcome, detail = self._node._broadcast(self._as_request(row, phase))
            self._step(phase, "broadcast", row)
            with self._session() as session, session.begin():
                locked = outbox.lock_row(session, row_id)
                if locked is None or _state(locked, phase) != phase.signed:
                    continue
                self._record(locked, phase, outcome, detail, report)
            if _state(locked, phase) == phase.sent:
                report.broadcast += 1
                self._step(phase, "sent", locked)

    @staticmethod
    def _as_request(row: BreachSubmission, phase: Phase) -> Any:
        """The relayer's helpers read only `raw_tx` and `tx_hash`."""

        @dataclass
        class _Tx:
            raw_tx: str | None
            tx_hash: str | None

        return _Tx(getattr(row, phase.raw_attr), getattr(row, phase.hash_attr))

    def _record(
        self, row: BreachSubmission, phase: Phase, outcome: str, detail: str | None,
        report: SubmitReport,
    ) -> None:
        if outcome in ("accepted", "known"):
            self._move(row, phase, phase.sent, None)
        elif outcome == "superseded":  # the nonce went elsewhere: these bytes can never be mined
            setattr(row, phase.raw_attr, None)
            setattr(row, phase.hash_attr, None)
            if phase is REPORT:
                row.nonce = None
            self._move(row, phase, phase.pending,
                       f"nonce used by another transaction ({detail}); re-signing")
            report.requeued += 1
        else:
            self._move(row, phase, phase.signed, f"broadcast refused: {detail}")

    # ----------------------------------------------------------------- 4. settle

    def settle_sent(self, report: SubmitReport) -> None:
        ids = self._ids(
            or_(BreachSubmission.status == SENT, BreachSubmission.follow_up == FINALIZE_SENT)
        )
        for row_id in ids:
            with self._session() as session:
                row = session.get(BreachSubmission, row_id)
            phase = None if row is None else self._phase(row, signed=False)
            if row is None or phase is None:
                continue
            tx_hash = cast(str, getattr(row, phase.hash_attr))
            receipt = self._node._receipt(tx_hash)
            if receipt is None:
                self._rebroadcast_lost(row, phase, report)
                continue
            if int(self.w3.eth.block_number) - int(receipt["blockNumber"]) < self.confirmations:
                continue
            self._step(phase, "receipt", row)
            with self._session() as session, session.begin():
                locked = outbox.lock_row(session, row_id)
                if locked is None or _state(locked, phase) != phase.sent:
                    continue
                if phase is REPORT:
                    self._settle_report(locked, receipt, report)
                else:
                    self._settle_finalize(locked, receipt, report)
            self._step(phase, "finished", locked)

    def _settle_report(
        self, row: BreachSubmission, receipt: TxReceipt, report: SubmitReport
    ) -> None:
        if int(receipt["status"]) == 1:
            events = self.services.escrow.contract.events.BreachReported().process_receipt(
                receipt, errors=DISCARD
            )
            self._mined(row, int(events[0]["args"]["breachId"]), None)
            report.mined += 1
            return
        error = self._node._revert_reason(receipt)
        if isinstance(error, EscrowBreachAlreadyReported):
            self._mined(row, self._chain_breach_id(row), "already reported on chain")
            report.mined += 1
        else:
            self._fail(row, error)
            report.failed += 1

    def _settle_finalize(
        self, row: BreachSubmission, receipt: TxReceipt, report: SubmitReport
    ) -> None:
        if int(receipt["status"]) == 1:
            self._move(row, FINALIZE, DONE, None)
            report.followed += 1
            return
        assert row.breach_id is not None
        state = self.services.escrow.get_breach(row.escrow_id, row.breach_id).state
        error = self._node._revert_reason(receipt)
        if state == BreachState.FINALIZED:
            self._move(row, FINALIZE, DONE, None)
        elif state == BreachState.CHALLENGED:
            self._move(row, FINALIZE, CHALLENGED, None)
        elif state in _SETTLED:
            self._move(row, FINALIZE, RESOLVED, None)
        else:
            self._move(row, FINALIZE, FOLLOW_FAILED, error.message)
            report.failed += 1
            return
        report.followed += 1

    def _rebroadcast_lost(
        self, row: BreachSubmission, phase: Phase, report: SubmitReport
    ) -> None:
        """No receipt: if the node has forgotten the transaction, send the same bytes again."""
        tx = self._as_request(row, phase)
        if self._node._node_has(tx.tx_hash):
            return
        outcome, detail = self._node._broadcast(tx)
        if outcome in ("accepted", "known"):
            return
        with self._session() as session, session.begin():
            locked = outbox.lock_row(session, row.id)
            if locked is not None and _state(locked, phase) == phase.sent:
                self._record(locked, phase, outcome, detail, report)

    # ----------------------------------------------------------------- rows

    def _mined(self, row: BreachSubmission, breach_id: int | None, note: str | None) -> None:
        row.breach_id = breach_id
        self._move(row, REPORT, MINED, note)

    def _fail(self, row: BreachSubmission, error: ChainError) -> None:
        logger.warning("breach submission %s failed: %s", row.id, error.message)
        self._move(row, REPORT, FAILED, error.message)

    @staticmethod
    def _move(row: BreachSubmission, phase: Phase, state: str, error: str | None) -> None:
        setattr(row, phase.state_attr, state)
        row.error = error
        row.updated_at = int(time.time())

