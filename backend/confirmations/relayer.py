"""The relayer worker: sends each outbox row's `confirmWithSig` exactly once.

One pass (`run_once`) does three things, each step committed before the next begins:
1. **sign** every pending row: under the `sender_nonce` row lock, simulate the call (a revert marks
   the row failed with the decoded error and uses no nonce), sign it with the next nonce, store the
   raw bytes and the hash, bump the nonce; commit. Nothing has left the process yet.
2. **broadcast** every signed row in nonce order: send the stored bytes; mark the row sent.
   "Already known" / "nonce too low" mean the node has seen it: the receipt is looked up by hash.
3. **settle** every sent row: a receipt `ESCROW_CONFIRMATIONS` deep marks it mined (status 1) or
   failed with the reason decoded by replaying the call (status 0); a transaction the node has
   lost is rebroadcast, from the same bytes.

The process can die between any two steps: every state on disk says what to do next, and only
the stored bytes are ever broadcast again, so a restart loses nothing and sends nothing twice.
A `hook(step, row)` runs at each step boundary (tests crash the relayer there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

import requests
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy.orm import Session
from web3.exceptions import TransactionNotFound
from web3.types import Nonce, TxParams, TxReceipt

from backend.chain.errors import ChainError, EscrowUnknown, TransactionFailed
from backend.chain.transactions import REVERT_EXCEPTIONS, as_chain_error
from backend.chain.types import EscrowParams
from backend.confirmations import outbox
from backend.confirmations.outbox import FAILED, MINED, PENDING, SENT, SIGNED
from backend.db.models import ConfirmationRequest, EscrowRow
from backend.outbox.owner import relayer_ownership
from backend.services import Services

logger = logging.getLogger(__name__)

Hook = Callable[[str, ConfirmationRequest], None]
#: step boundaries, in the order a row passes them
STEPS = ("signing", "signed", "broadcast", "sent", "receipt", "finished")
GAS_MARGIN = 1.25

_KNOWN = ("already known", "known transaction", "alreadyknown", "already imported")
_NONCE_USED = ("nonce too low", "nonce is too low", "oldnonce", "nonce has already been used")

BroadcastOutcome = Literal["accepted", "known", "superseded", "refused"]


@dataclass
class RelayReport:
    """What one pass did."""

    signed: int = 0
    broadcast: int = 0
    mined: int = 0
    failed: int = 0
    requeued: int = 0

    @property
    def busy(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def add(self, other: RelayReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _describe(error: ChainError) -> str:
    return error.message


class Relayer:
    """Relays the outbox of one chain from one account (the only sender from that account)."""

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
        self.chain_id = services.chain_id
        self.hook = hook
        self.confirmations = (
            services.settings.confirmations if confirmations is None else confirmations
        )

    # ----------------------------------------------------------------- passes

    def run_once(self) -> RelayReport:
        report = RelayReport()
        self.sign_pending(report)
        self.broadcast_signed(report)
        self.settle_sent(report)
        return report

    def run_until_idle(self, *, max_passes: int = 20) -> RelayReport:
        """Passes until nothing is left to do but wait (for a mined block or confirmations)."""
        total = RelayReport()
        for _ in range(max_passes):
            report = self.run_once()
            total.add(report)
            if not report.busy:
                break
        return total

    def run_forever(self, stop: threading.Event, *, interval: float = 1.0) -> None:
        """The worker loop; errors of one pass (node or database away) are logged and retried."""
        with relayer_ownership(self.services, self.account.address):
            logger.info("relayer %s started on chain %s", self.account.address, self.chain_id)
            while not stop.is_set():
                try:
                    report = self.run_once()
                except Exception:
                    logger.exception("relayer pass failed; retrying")
                    report = RelayReport()
                if not report.busy:
                    stop.wait(interval)

    def _step(self, name: str, row: ConfirmationRequest) -> None:
        if self.hook is not None:
            self.hook(name, row)

    def _session(self) -> Session:
        return self.services.sessions()

    # ----------------------------------------------------------------- 1. sign

    def sign_pending(self, report: RelayReport) -> None:
        with self._session() as session:
            ids = outbox.rows_in(session, self.chain_id, PENDING)
        for request_id in ids:
            with self._session() as session, session.begin():
                nonce_row = outbox.take_nonce(
                    session, self.chain_id, self.account.address, self._chain_nonce()
                )
                row = outbox.lock_row(session, request_id, PENDING)
                if row is None:
                    continue
                if self._sign(session, row, nonce_row.next_nonce):
                    nonce_row.next_nonce += 1
                    report.signed += 1
                else:
                    report.failed += 1
                self._step("signing", row)
            if row.status == SIGNED:
                self._step("signed", row)

    def _chain_nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(self.account.address, "pending"))

    def _params(self, session: Session, escrow_id: int) -> EscrowParams:
        indexed = session.get(EscrowRow, (self.chain_id, escrow_id))
        if indexed is not None:
            return EscrowParams.from_json(indexed.params)
        return self.services.escrow.params(escrow_id)

    def _sign(self, session: Session, row: ConfirmationRequest, nonce: int) -> bool:
        """Simulates and signs the row's transaction; False (row failed) when it would revert."""
        escrow = self.services.escrow
        try:
            escrow.remember(row.escrow_id, self._params(session, row.escrow_id))
        except EscrowUnknown as exc:  # the chain no longer has the escrow (a reset dev chain)
            self._fail(row, exc)
            return False
        fn = escrow.function(
            "confirmWithSig",
            row.escrow_id,
            row.milestone,
            row.rating,
            bytes.fromhex(row.comment_hash.removeprefix("0x")),
            row.deadline,
            bytes.fromhex(row.signature.removeprefix("0x")),
        )
        try:
            gas = int(fn.estimate_gas({"from": self.account.address}))
        except REVERT_EXCEPTIONS as exc:
            self._fail(row, as_chain_error(exc))
            return False
        params: TxParams = {
            "from": self.account.address,
            "nonce": Nonce(nonce),
            "gas": int(gas * GAS_MARGIN),
            "chainId": self.chain_id,
        }
        tx = fn.build_transaction(params)
        signed = self.account.sign_transaction(cast(dict[str, Any], tx))
        row.nonce = nonce
        row.raw_tx = _hex(signed.raw_transaction)
        row.tx_hash = _hex(signed.hash)
        self._move(row, SIGNED, None)
        return True

    # ----------------------------------------------------------------- 2. broadcast

    def broadcast_signed(self, report: RelayReport) -> None:
        with self._session() as session:
            ids = outbox.rows_in(session, self.chain_id, SIGNED)
        for request_id in ids:
            with self._session() as session:
                row = session.get(ConfirmationRequest, request_id)
            if row is None or row.status != SIGNED or row.raw_tx is None:
                continue
            outcome, detail = self._broadcast(row)
            self._step("broadcast", row)
            with self._session() as session, session.begin():
                locked = outbox.lock_row(session, request_id, SIGNED)
                if locked is None:
                    continue
                self._record(locked, outcome, detail, report)
            if outcome == "refused":
                break  # later nonces cannot be mined before this one
            if locked.status == SENT:
                report.broadcast += 1
                self._step("sent", locked)

    def _broadcast(self, row: ConfirmationRequest) -> tuple[BroadcastOutcome, str | None]:
        """Sends the stored bytes. When the node objects ("already known", "nonce too low", or a
        node that reports a mined revert as an error) the transaction is looked up by its hash:
        if the node has it, it was sent."""
        assert row.raw_tx is not None and row.tx_hash is not None
        try:
            self.w3.eth.send_raw_transaction(HexBytes(row.raw_tx))
            return "accepted", None
        except (requests.RequestException, OSError):
            raise  # the node is away: retry the whole step later
        except Exception as exc:
            message = str(exc)
        if self._node_has(row.tx_hash):
            return "known", message
        lowered = message.lower()
        if any(k in lowered for k in _NONCE_USED):
            return "superseded", message
        if any(k in lowered for k in _KNOWN):
            return "known", message
        logger.warning("node refused transaction %s: %s", row.tx_hash, message)
        return "refused", message

    def _node_has(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(HexBytes(tx_hash))
        except TransactionNotFound:
            return False
        return True

    def _record(
        self, row: ConfirmationRequest, outcome: BroadcastOutcome, detail: str | None,
        report: RelayReport,
    ) -> None:
        if outcome in ("accepted", "known"):
            self._move(row, SENT, None)
        elif outcome == "superseded":
            # The nonce went to another transaction, so these bytes can never be mined: sign the
            # confirmation anew with a fresh nonce.
            row.nonce = row.raw_tx = row.tx_hash = None
            self._move(row, PENDING, f"nonce used by another transaction ({detail}); re-signing")
            report.requeued += 1
        else:
            self._move(row, row.status, f"broadcast refused: {detail}")

    # ----------------------------------------------------------------- 3. settle

    def settle_sent(self, report: RelayReport) -> None:
        with self._session() as session:
            ids = outbox.rows_in(session, self.chain_id, SENT)
        for request_id in ids:
            with self._session() as session:
                row = session.get(ConfirmationRequest, request_id)
            if row is None or row.status != SENT or row.tx_hash is None:
                continue
            receipt = self._receipt(row.tx_hash)
            if receipt is None:
                self._rebroadcast_lost(row, report)
                continue
            head = int(self.w3.eth.block_number)
            if head - int(receipt["blockNumber"]) < self.confirmations:
                continue
            self._step("receipt", row)
            with self._session() as session, session.begin():
                locked = outbox.lock_row(session, request_id, SENT)
                if locked is None:
                    continue
                if int(receipt["status"]) == 1:
                    self._move(locked, MINED, None)
                    report.mined += 1
                else:
                    self._fail(locked, self._revert_reason(receipt))
                    report.failed += 1
            self._step("finished", locked)

    def _receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None

    def _rebroadcast_lost(self, row: ConfirmationRequest, report: RelayReport) -> None:
        """No receipt yet: if the node no longer knows the transaction (dropped, or reorged out
        and forgotten), send the same bytes again."""
        assert row.tx_hash is not None
        if self._node_has(row.tx_hash):
            return
        outcome, detail = self._broadcast(row)
        if outcome in ("accepted", "known"):
            return
        with self._session() as session, session.begin():
            locked = outbox.lock_row(session, row.id, SENT)
            if locked is not None:
                self._record(locked, outcome, detail, report)

    def _revert_reason(self, receipt: TxReceipt) -> ChainError:
        """A mined revert carries no reason: replay the call on the parent block, then on the
        block itself (where an earlier transaction of the block may have changed the state)."""
        tx = self.w3.eth.get_transaction(receipt["transactionHash"])
        call: TxParams = {
            "from": self.account.address,
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
        return TransactionFailed(_hex(receipt["transactionHash"]))

    # ----------------------------------------------------------------- rows

    def _fail(self, row: ConfirmationRequest, error: ChainError) -> None:
        logger.warning("confirmation request %s failed: %s", row.id, error.message)
        self._move(row, FAILED, _describe(error))

    @staticmethod
    def _move(row: ConfirmationRequest, status: str, error: str | None) -> None:
        row.status = status
        row.error = error
        row.updated_at = int(time.time())
