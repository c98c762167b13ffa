"""The one transaction sender: sends each outbox row's transaction exactly once.

A `Sender` subclass says only what is its own: which outbox table it drains (`model`), the
phases a row passes (`phases`: one transaction each, e.g. a breach report and later its
finalization), which rows are due (`due`), the contract call of a row (`build`) and what a
simulated refusal or a mined (or reverted) transaction means for the row (`refused`,
`settled`). The base does the rest, in one pass (`run_once`), each step committed before the
next begins:

1. **sign** every due row: under the `sender_nonce` row lock (`backend/outbox/nonce.py`),
   simulate the call (a revert is handed to `refused`, decoded, and uses no nonce), sign it with
   the next nonce, store the raw bytes and the hash in `outbox_transaction` and point the row at
   it, bump the nonce; commit. Nothing has left the process yet.
2. **broadcast** every signed transaction of the account in nonce order: send the stored bytes;
   mark the transaction and its row sent. "Already known" / "nonce too low" mean the node has
   seen it: the transaction is looked up by hash. A nonce another transaction took makes the
   stored bytes unminable: the transaction is kept as `superseded` and the row is signed anew.
3. **settle** every sent transaction: a receipt `ESCROW_CONFIRMATIONS` deep marks it mined
   (status 1) or reverted with the reason decoded by replaying the call (status 0), and
   `settled` says what that means for the row; a transaction the node has lost is rebroadcast,
   from the same bytes.

The process can die between any two steps: every state on disk says what to do next, and only
the stored bytes are ever broadcast again, so a restart loses nothing and sends nothing twice.
A `hook(step, row)` runs at each step boundary (`STEPS`, prefixed by the phase's `prefix`; tests
crash the sender there). One process owns a (sender, chain, account) at a time
(`backend/outbox/owner.py`), held by the one worker loop `run_forever`.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web3.exceptions import TransactionNotFound
from web3.types import Nonce, TxParams, TxReceipt

from backend.chain.errors import (
    ChainError,
    EscrowUnknown,
    TransactionFailed,
    is_transport_failure,
)
from backend.chain.transactions import REVERT_EXCEPTIONS, as_chain_error
from backend.chain.types import EscrowParams
from backend.db.models import EscrowRow, OutboxRow, OutboxTransaction
from backend.outbox.nonce import IN_FLIGHT, take_nonce
from backend.outbox.owner import ownership
from backend.services import Services

logger = logging.getLogger(__name__)

RowT = TypeVar("RowT", bound=OutboxRow)
#: called as `hook(step, row)` at every step boundary
Hook = Callable[[str, RowT], None]
#: step boundaries, in the order a row's transaction passes them
STEPS = ("signing", "signed", "broadcast", "sent", "receipt", "finished")
#: the simulated gas is raised by this factor, for state that changes before inclusion
GAS_MARGIN = 1.25
#: states of an `OutboxTransaction`
SIGNED, SENT, MINED, REVERTED, SUPERSEDED = "signed", "sent", "mined", "reverted", "superseded"

_KNOWN = ("already known", "known transaction", "alreadyknown", "already imported")
_NONCE_USED = ("nonce too low", "nonce is too low", "oldnonce", "nonce has already been used")

BroadcastOutcome = Literal["accepted", "known", "superseded", "refused"]


@dataclass
class SendReport:
    """What one pass did (counts of rows)."""

    enqueued: int = 0
    signed: int = 0
    broadcast: int = 0
    mined: int = 0
    failed: int = 0
    requeued: int = 0
    #: follow-up states a row moved to after its transaction was mined (the oracle's)
    followed: int = 0

    @property
    def busy(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def add(self, other: SendReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class Phase:
    """One transaction of an outbox row: where the row mirrors its state and links it."""

    #: stored as `OutboxTransaction.purpose` ("confirm", "report", "finalize")
    purpose: str
    #: the row's column that mirrors the transaction's state
    state_attr: str
    #: the row's column holding the `OutboxTransaction` id
    link_attr: str
    pending: str
    signed: str
    sent: str
    failed: str
    #: prefix of the step names handed to the hook
    prefix: str = ""

    def state(self, row: Any) -> str:
        return cast(str, getattr(row, self.state_attr))

    def link(self, row: Any, tx: OutboxTransaction | None) -> None:
        """Points the row at `tx` (its relationship is the link column without `_id`)."""
        setattr(row, self.link_attr.removesuffix("_id"), tx)
        setattr(row, self.link_attr, None if tx is None else tx.id)


def hex0x(value: bytes) -> str:
    """Bytes as lower-case 0x hex."""
    return "0x" + bytes(value).hex()


class Sender(ABC, Generic[RowT]):
    """Sends the outbox of one chain from one account (the only sender from that account)."""

    #: names the ownership lock, the metrics label and the stored transactions
    name: ClassVar[str]
    #: the outbox table
    model: ClassVar[type[OutboxRow]]
    #: the phases of a row; the first one's `state_attr` is the row's status
    phases: ClassVar[tuple[Phase, ...]]
    #: every status of a row, for the metrics
    statuses: ClassVar[tuple[str, ...]]
    #: seconds the worker loop waits after an idle pass
    interval: ClassVar[float] = 1.0

    def __init__(
        self,
        services: Services,
        account: LocalAccount,
        *,
        hook: Hook[RowT] | None = None,
        confirmations: int | None = None,
    ) -> None:
        self.services = services
        self.w3 = services.w3
        self.clock = services.clock
        self.account = account
        self.address = account.address
        self.chain_id = services.chain_id
        self.hook = hook
        self.confirmations = (
            services.settings.confirmations if confirmations is None else confirmations
        )

    # ----------------------------------------------------------------- what a subclass says

    @abstractmethod
    def due(self, session: Session) -> list[int]:
        """Ids of the rows whose first phase's transaction is to be signed now."""
        raise NotImplementedError

    @abstractmethod
    def build(self, session: Session, row: RowT, phase: Phase, report: SendReport) -> Any:
        """The contract function to send for `row` in `phase` (a web3 `ContractFunction`), or
        None when the row was settled without sending (the subclass moved it)."""
        raise NotImplementedError

    def refused(self, row: RowT, phase: Phase, error: ChainError, report: SendReport) -> None:
        """The simulation reverted with `error` (no nonce used): by default the row fails."""
        self.fail(row, phase, error)
        report.failed += 1

    @abstractmethod
    def settled(
        self, row: RowT, phase: Phase, receipt: TxReceipt, error: ChainError | None,
        report: SendReport,
    ) -> None:
        """The row's transaction is `ESCROW_CONFIRMATIONS` deep: mined (`error` None) or
        reverted with the decoded `error`."""
        raise NotImplementedError

    def prepare(self, report: SendReport) -> None:
        """Work before the pass signs (queueing rows, following mined ones up); none here."""

    # ----------------------------------------------------------------- passes

    def run_once(self) -> SendReport:
        report = SendReport()
        self.prepare(report)
        self.sign_pending(report)
        self.broadcast_signed(report)
        self.settle_sent(report)
        return report

    def run_until_idle(self, *, max_passes: int = 20) -> SendReport:
        """Passes until nothing is left to do but wait (for a mined block or confirmations)."""
        total = SendReport()
        for _ in range(max_passes):
            report = self.run_once()
            total.add(report)
            if not report.busy:
                break
        return total

    def run_forever(self, stop: threading.Event, *, interval: float | None = None) -> None:
        """The worker loop of every sender: holds the ownership lock of (sender, chain, account)
        for its whole life (`SenderBusyError` when another process has it); errors of one pass
        (node or database away) are logged and the pass retried after `interval` seconds."""
        wait = self.interval if interval is None else interval
        with ownership(self.services, self.name, self.address):
            logger.info("%s %s started on chain %s", self.name, self.address, self.chain_id)
            while not stop.is_set():
                try:
                    report = self.run_once()
                except Exception:
                    logger.exception("%s pass failed; retrying", self.name)
                    report = SendReport()
                if not report.busy:
                    stop.wait(wait)

    # ----------------------------------------------------------------- helpers for subclasses

    def step(self, phase: Phase, name: str, row: RowT) -> None:
        if self.hook is not None:
            self.hook(phase.prefix + name, row)

    def session(self) -> Session:
        return self.services.sessions()

    def lock(self, session: Session, row_id: int) -> RowT | None:
        """The row under a row lock, freshly read."""
        return cast(
            "RowT | None",
            session.get(self.model, row_id, with_for_update=True, populate_existing=True),
        )

    def move(self, row: RowT, phase: Phase, state: str, error: str | None) -> None:
        setattr(row, phase.state_attr, state)
        row.error = error
        row.updated_at = self.clock.service_time()

    def fail(self, row: RowT, phase: Phase, error: ChainError) -> None:
        logger.warning("%s row %s failed: %s", self.name, row.id, error.message)
        self.move(row, phase, phase.failed, error.message)

    def row_ids(self, session: Session, *conditions: Any) -> list[int]:
        """Ids of this chain's outbox rows meeting `conditions`, oldest first (100 at most)."""
        model = self.model
        return list(
            session.scalars(
                select(model.id)
                .where(model.chain_id == self.chain_id, *conditions)
                .order_by(model.id)
                .limit(100)
            )
        )

    def remember_escrow(
        self, session: Session, row: RowT, phase: Phase, escrow_id: int, report: SendReport
    ) -> bool:
        """Makes the escrow's parameters known to the client that builds calls; False (and the
        row failed, `EscrowUnknown`) when neither the index nor the chain has the escrow (a
        reset dev chain)."""
        try:
            self.services.escrow.remember(escrow_id, self.escrow_params(session, escrow_id))
        except EscrowUnknown as exc:
            self.fail(row, phase, exc)
            report.failed += 1
            return False
        return True

    def escrow_params(self, session: Session, escrow_id: int) -> EscrowParams:
        """The escrow's parameters, from the index or else from the chain (`EscrowUnknown`
        when the chain does not have it either)."""
        indexed = session.get(EscrowRow, (self.chain_id, escrow_id))
        if indexed is not None:
            return EscrowParams.from_json(indexed.params)
        return self.services.escrow.params(escrow_id)

    def chain_nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(self.address, "pending"))

    # ----------------------------------------------------------------- 1. sign

    def sign_pending(self, report: SendReport) -> None:
        with self.session() as session:
            ids = self.due(session)
        for row_id in ids:
            self.sign(row_id, self.phases[0], report)

    def sign(self, row_id: int, phase: Phase, report: SendReport) -> None:
        """Simulates and signs the row's transaction of `phase` under the nonce lock, if the row
        is still `phase.pending`; stores bytes and hash (committed) before anything is sent."""
        with self.session() as session, session.begin():
            nonce_row = take_nonce(session, self.chain_id, self.address, self.chain_nonce())
            row = self.lock(session, row_id)
            if row is None or phase.state(row) != phase.pending:
                return
            fn = self.build(session, row, phase, report)
            if fn is not None:
                try:
                    gas = int(fn.estimate_gas({"from": self.address}))
                except REVERT_EXCEPTIONS as exc:
                    self.refused(row, phase, as_chain_error(exc), report)
                else:
                    self._store(session, row, phase, fn, gas, nonce_row.next_nonce)
                    nonce_row.next_nonce += 1
                    report.signed += 1
            if phase.state(row) == phase.pending:
                return  # nothing changed (e.g. too early): no step was taken
            self.step(phase, "signing", row)
        if phase.state(row) == phase.signed:
            self.step(phase, "signed", row)

    def _store(
        self, session: Session, row: RowT, phase: Phase, fn: Any, gas: int, nonce: int
    ) -> None:
        params: TxParams = {
            "from": self.address,
            "nonce": Nonce(nonce),
            "gas": int(gas * GAS_MARGIN),
            "chainId": self.chain_id,
        }
        signed = self.account.sign_transaction(cast(dict[str, Any], fn.build_transaction(params)))
        now = self.clock.service_time()
        tx = OutboxTransaction(
            chain_id=self.chain_id, account=self.address, sender=self.name,
            purpose=phase.purpose, nonce=nonce, raw_tx=hex0x(signed.raw_transaction),
            tx_hash=hex0x(signed.hash), status=SIGNED, created_at=now, updated_at=now,
        )
        session.add(tx)
        session.flush()
        phase.link(row, tx)
        self.move(row, phase, phase.signed, None)

    # ----------------------------------------------------------------- 2. broadcast

    def _transactions(self, session: Session, status: str) -> list[int]:
        """Ids of this sender's transactions in `status`, in nonce order."""
        return list(
            session.scalars(
                select(OutboxTransaction.id)
                .where(
                    OutboxTransaction.chain_id == self.chain_id,
                    OutboxTransaction.account == self.address,
                    OutboxTransaction.sender == self.name,
                    OutboxTransaction.status == status,
                )
                .order_by(OutboxTransaction.nonce, OutboxTransaction.id)
                .limit(100)
            )
        )

    def _phase(self, tx: OutboxTransaction) -> Phase:
        return next(p for p in self.phases if p.purpose == tx.purpose)

    def _load(
        self, tx_id: int, status: str
    ) -> tuple[OutboxTransaction, RowT, Phase] | None:
        """The transaction (still in `status`), the row it carries and the phase."""
        with self.session() as session:
            tx = session.get(OutboxTransaction, tx_id)
            if tx is None or tx.status != status:
                return None
            phase = self._phase(tx)
            column = getattr(self.model, phase.link_attr)
            row = session.scalar(select(self.model).where(column == tx.id))
        return None if row is None else (tx, cast(RowT, row), phase)

    def _locked(
        self, session: Session, tx: OutboxTransaction, row: RowT, phase: Phase
    ) -> tuple[OutboxTransaction, RowT] | None:
        """Both, under row locks, if no other pass moved them since they were read."""
        locked_tx = session.get(
            OutboxTransaction, tx.id, with_for_update=True, populate_existing=True
        )
        locked = self.lock(session, row.id)
        if (
            locked_tx is None or locked_tx.status != tx.status
            or locked is None or getattr(locked, phase.link_attr) != tx.id
        ):
            return None
        return locked_tx, locked

    def _queue(self, status: str) -> Iterator[tuple[OutboxTransaction, RowT, Phase]]:
        """This sender's transactions in `status` in nonce order, each read when its turn comes
        (an earlier one's step may have moved it), with the row it carries and the phase."""
        with self.session() as session:
            ids = self._transactions(session, status)
        for tx_id in ids:
            loaded = self._load(tx_id, status)
            if loaded is not None:
                yield loaded

    def broadcast_signed(self, report: SendReport) -> None:
        for tx, row, phase in self._queue(SIGNED):
            outcome, detail = self.broadcast(tx)
            self.step(phase, "broadcast", row)
            with self.session() as session, session.begin():
                both = self._locked(session, tx, row, phase)
                if both is None:
                    continue
                self._record(both[0], both[1], phase, outcome, detail, report)
            if outcome == "refused":
                break  # later nonces cannot be mined before this one
            if both[0].status == SENT:
                report.broadcast += 1
                self.step(phase, "sent", both[1])

    def broadcast(self, tx: OutboxTransaction) -> tuple[BroadcastOutcome, str | None]:
        """Sends the stored bytes. When the node objects ("already known", "nonce too low", or a
        node that reports a mined revert as an error) the transaction is looked up by its hash:
        if the node has it, it was sent. Raises the transport error when the node is away (the
        whole step is retried later)."""
        try:
            self.w3.eth.send_raw_transaction(HexBytes(tx.raw_tx))
            return "accepted", None
        except Exception as exc:
            if is_transport_failure(exc):
                raise
            message = str(exc)
        if self.node_has(tx.tx_hash):
            return "known", message
        lowered = message.lower()
        if any(k in lowered for k in _NONCE_USED):
            return "superseded", message
        if any(k in lowered for k in _KNOWN):
            return "known", message
        logger.warning("node refused transaction %s: %s", tx.tx_hash, message)
        return "refused", message

    def node_has(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(HexBytes(tx_hash))
        except TransactionNotFound:
            return False
        return True

    def _record(
        self, tx: OutboxTransaction, row: RowT, phase: Phase, outcome: BroadcastOutcome,
        detail: str | None, report: SendReport,
    ) -> None:
        now = self.clock.service_time()
        if outcome in ("accepted", "known"):
            tx.status, tx.error, tx.updated_at = SENT, None, now
            self.move(row, phase, phase.sent, None)
        elif outcome == "superseded":
            # The nonce went to another transaction, so these bytes can never be mined: the
            # transaction stays on record and the row is signed anew with a fresh nonce.
            tx.status, tx.error, tx.updated_at = SUPERSEDED, detail, now
            phase.link(row, None)
            self.move(row, phase, phase.pending,
                      f"nonce used by another transaction ({detail}); re-signing")
            report.requeued += 1
        else:
            tx.error, tx.updated_at = f"broadcast refused: {detail}", now
            self.move(row, phase, phase.state(row), f"broadcast refused: {detail}")

    # ----------------------------------------------------------------- 3. settle

    def settle_sent(self, report: SendReport) -> None:
        for tx, row, phase in self._queue(SENT):
            receipt = self.receipt(tx.tx_hash)
            if receipt is None:
                self._rebroadcast_lost(tx, row, phase, report)
                continue
            if int(self.w3.eth.block_number) - int(receipt["blockNumber"]) < self.confirmations:
                continue
            error = None if int(receipt["status"]) == 1 else self.revert_reason(receipt)
            self.step(phase, "receipt", row)
            with self.session() as session, session.begin():
                both = self._locked(session, tx, row, phase)
                if both is None:
                    continue
                locked_tx, locked = both
                locked_tx.status = MINED if error is None else REVERTED
                locked_tx.error = None if error is None else error.message
                locked_tx.updated_at = self.clock.service_time()
                self.settled(locked, phase, receipt, error, report)
            self.step(phase, "finished", locked)

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None

    def _rebroadcast_lost(
        self, tx: OutboxTransaction, row: RowT, phase: Phase, report: SendReport
    ) -> None:
        """No receipt yet: if the node no longer knows the transaction (dropped, or reorged out
        and forgotten), send the same bytes again."""
        if self.node_has(tx.tx_hash):
            return
        outcome, detail = self.broadcast(tx)
        if outcome in ("accepted", "known"):
            return
        with self.session() as session, session.begin():
            both = self._locked(session, tx, row, phase)
            if both is not None:
                self._record(both[0], both[1], phase, outcome, detail, report)

    def revert_reason(self, receipt: TxReceipt) -> ChainError:
        """A mined revert carries no reason: replay the call on the parent block, then on the
        block itself (where an earlier transaction of the block may have changed the state)."""
        tx = self.w3.eth.get_transaction(receipt["transactionHash"])
        call: TxParams = {
            "from": self.address,
            "to": tx["to"],
            "data": tx["input"],
            "gas": tx["gas"],
        }
        block = int(receipt["blockNumber"])
        for at in (block - 1, block):
            try:
                self.w3.eth.call(call, block_identifier=at)
            except REVERT_EXCEPTIONS as exc:
                return as_chain_error(exc)
            except Exception:  # state not available (pruned node)
                break
        return TransactionFailed(hex0x(receipt["transactionHash"]))

    # ----------------------------------------------------------------- metrics

    @classmethod
    def outbox_counts(cls, session: Session, chain_id: int) -> dict[str, int]:
        """Rows of this sender's outbox on `chain_id` by status (every status, 0 included)."""
        status = getattr(cls.model, cls.phases[0].state_attr)
        found: dict[str, int] = {
            str(s): int(n)
            for s, n in session.execute(
                select(status, func.count())
                .where(cls.model.chain_id == chain_id)
                .group_by(status)
            )
        }
        return {s: found.get(s, 0) for s in sorted(set(cls.statuses) | set(found))}

    @classmethod
    def oldest_in_flight(cls, session: Session, chain_id: int) -> int | None:
        """`created_at` (unix seconds) of this sender's oldest signed or sent transaction."""
        oldest = session.scalar(
            select(func.min(OutboxTransaction.created_at)).where(
                OutboxTransaction.chain_id == chain_id,
                OutboxTransaction.sender == cls.name,
                OutboxTransaction.status.in_(IN_FLIGHT),
            )
        )
        return None if oldest is None else int(oldest)
