"""The one transaction sender: sends each outbox row's transaction exactly once.

A `Sender` subclass says only what is its own: which outbox table it drains (`model`), the
phases a row passes (`phases`: one transaction each, e.g. a breach report and later its
finalization), which rows are due (`due`), the contract call of a row (`build`), what a
simulated refusal or a mined (or reverted) transaction means for the row (`refused`,
`settled`) and, if the call carries one, the deadline after which it can only revert
(`deadline`). The base does the rest, in one pass (`run_once`), each step committed before the
next begins. Each step works in batches of up to `BATCH` rows (pipelined: a step does not wait
for the node to mine anything): one database transaction per batch, the node's reads and
simulations in JSON-RPC batches (`backend.chain.bulk_rpc.batch`), the broadcasts back to back.

1. **sign** every due row: under the `sender_nonce` row lock (`backend/outbox/nonce.py`, read
   once per batch with the node's pending count), simulate the call (all calls of the batch in
   one JSON-RPC batch of `eth_estimateGas`; a call that does not pass is simulated again alone)
   with at most the phase's gas cap (`Phase.gas_setting`: `ESCROW_RELAY_MAX_GAS`,
   `ESCROW_REPORT_MAX_GAS`, `ESCROW_FINALIZE_MAX_GAS`; `backend.chain.transactions.estimate_within`:
   a revert is handed to `refused`, decoded, and so is a call that needs more gas than the cap,
   `GasOverCap`; neither uses a nonce), check the row's spend bound (`over_budget`, the relayer's
   per escrow and per client, `backend/outbox/spend.py`; over it the row fails, no nonce used),
   sign it with the next nonce at the fees of `backend/outbox/fees.py` (EIP-1559 type 2 when the
   chain has a base fee) and a gas limit of the estimate * `GAS_MARGIN`, at most the cap and the
   block's gas limit, store the raw bytes, hash, fees, gas limit and whom it is for in
   `outbox_transaction` and point the row at it, bump the nonce; commit (the whole batch).
   Nothing has left the process yet. (Signing is deterministic: a
   row signed anew with the same nonce and fees, e.g. after a reorg freed the nonce, gives the
   very bytes already stored, and that stored transaction is the one sent again.)
2. **broadcast** every signed transaction of the account in nonce order: send the stored bytes,
   one after another without waiting for receipts (`broadcast_all`; not a JSON-RPC batch, which
   a node may run out of order); then, in one database transaction, mark each transaction and
   its row sent (and the earlier versions of its nonce `replaced`).
   "Already known" / "nonce too low" mean the node has seen it, or another version of the nonce
   was mined: the transactions are looked up by hash. A nonce another transaction took makes
   the stored bytes unminable: the transaction is kept as `superseded` and the row is signed
   anew (a fresh signature over the same call, linked to the old one). A refusal that can never
   pass (`for_good`: a gas limit above the block's, an invalid signature; not funds, fees, a
   full pool or a message not known, which stop the broadcast until a later pass) marks the
   transaction `refused` and leaves no nonce gap (`_give_up`): with no later nonce in flight
   the nonce goes back to the next row signed and the row fails with `NODE_REFUSED` and the
   node's words; with later nonces signed already a no-op filler (below) takes it, stored
   before it is broadcast, and the row fails with the same reason once the filler is mined. A
   restart meets the same refusal and does the same, so it is never stuck either.
3. **settle** every sent transaction by whichever version of its nonce has a receipt (the
   receipts of all versions read in JSON-RPC batches, the head once): the
   receipt's block number and hash (and its `gasUsed` and `effectiveGasPrice`, what it cost)
   are recorded, and it is re-read on every pass until it is
   `ESCROW_CONFIRMATIONS` deep; then (all of the batch in one database transaction) that
   version is mined (status 1) or reverted with the
   reason decoded by replaying the call (status 0), the others are `replaced` / `superseded`,
   the row points at the mined one and `settled` says what it means for the row. A receipt that
   vanished or moved to another block (a reorg) is forgotten and counting starts again; a
   transaction the node no longer has is broadcast again from the same bytes (and re-signed
   through step 2 when its nonce went elsewhere).
4. **replace** a transaction that stays unmined: priced under the next block's base fee, or
   unmined for `ESCROW_REPLACE_AFTER_BLOCKS` blocks since the node took it (and not merely
   waiting behind an earlier nonce of the account), it gets a new
   version of the same nonce with both fee caps raised by at least 10% (rounded up; the max fee
   at least 2 * base fee + tip), at most `ESCROW_MAX_FEE_PER_GAS`. The version is signed once
   and stored (`replaces_id` naming the one it replaces) before it is broadcast in the same
   pass; the row points at the newest. When the ceiling leaves no room the row says so in its
   `error` and waits for the base fee to fall.

A call whose `deadline` has passed while it is unmined can only revert. Its nonce cannot be left
unused (every later transaction of the account would wait behind it), so it is **filled**: the
sender stops raising the call's fees and replaces it with a no-op (a zero-value transfer to
itself, 21,000 gas, purpose `fill`) that outbids the last version by 10% and is priced for the
current base fee. Filling rather than letting the last version be mined: the last version may be
priced far under the base fee (that is why it is unmined) and would hold the nonce, and every
confirmation queued behind it, until the fees fall; and a filler costs less gas than the revert.
Whichever version of the nonce is mined settles it: the filler fails the row with
`DEADLINE_PASSED` ("deadline passed while unmined; sign again"); a call version mined first
reverts and fails the row with the decoded reason. When the fee ceiling leaves no room for a
filler the last version stays, to be mined (and revert) once the base fee falls.

The process can die between any two steps: every state on disk says what to do next, and only
stored bytes are ever broadcast, so a restart loses nothing and sends nothing twice (all
versions of a nonce share it: at most one is mined). A `hook(step, row)` runs at each step
boundary (`STEPS`, and `REPLACE_STEPS` around a replacement, prefixed by the phase's `prefix`;
tests crash the sender there): the rows of a batch meet "signing", "broadcast" and "receipt"
before their step's database transaction commits and "signed", "sent" and "finished" after.
One process owns a (sender, chain, account) at a time (`backend/outbox/owner.py`), held by the
one worker loop `run_forever`.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from web3.exceptions import TransactionNotFound
from web3.types import TxParams, TxReceipt

from backend.chain import bulk_rpc
from backend.chain.errors import (
    ChainError,
    EscrowUnknown,
    TransactionFailed,
    is_transport_failure,
)
from backend.chain.transactions import (
    REVERT_EXCEPTIONS,
    as_chain_error,
    calldata,
    estimate_within,
)
from backend.chain.types import EscrowParams
from backend.db.models import EscrowRow, OutboxRow, OutboxTransaction
from backend.logs import gwei
from backend.outbox.backlog import Backlog, WaitingItem
from backend.outbox.fees import (
    TRANSFER_GAS,
    Fees,
    Market,
    Signed,
    initial_fees,
    read_market,
    replacement_fees,
)
from backend.outbox.nonce import IN_FLIGHT, take_nonce
from backend.outbox.owner import ownership
from backend.outbox.versions import FILL, histories_of, nonce_versions
from backend.services import Services

logger = logging.getLogger(__name__)

RowT = TypeVar("RowT", bound=OutboxRow)
#: called as `hook(step, row)` at every step boundary
Hook = Callable[[str, RowT], None]
#: step boundaries, in the order a row's transaction passes them
STEPS = ("signing", "signed", "broadcast", "sent", "receipt", "finished")
#: step boundaries of a replacement (a fee bump or a nonce filler): signed in the database
#: transaction, then committed; its broadcast passes "broadcast" and "sent" again
REPLACE_STEPS = ("replacing", "replaced")
#: rows signed, transactions broadcast or settled per database transaction (and per JSON-RPC
#: batch, at most the node's batch size) in one step of a pass
BATCH = 100
#: the simulated gas is raised by this factor, for state that changes before inclusion
GAS_MARGIN = 1.25
#: states of an `OutboxTransaction`
SIGNED, SENT, MINED, REVERTED, SUPERSEDED = "signed", "sent", "mined", "reverted", "superseded"
REPLACED, REORGED, REFUSED = "replaced", "reorged", "refused"
#: the row's error when a filler took the nonce of a call whose deadline passed while unmined
DEADLINE_PASSED = "deadline passed while unmined; sign again"
#: the start of a row's error when the node refused its stored bytes for good
NODE_REFUSED = "the node refused the transaction"

_KNOWN = ("already known", "known transaction", "alreadyknown", "already imported")
_NONCE_USED = ("nonce too low", "nonce is too low", "oldnonce", "nonce has already been used")
#: refusals of stored bytes that can never pass, whatever the account's funds or the fee market
#: (matched after `_normalized`): a gas limit above the block's or below the intrinsic gas, a
#: bad signature, chain id or sender, an oversized transaction, a fee above the node's own cap.
#: Every other refusal (funds, fees, a full pool, a message not known here) may pass later: the
#: transaction stays signed and is broadcast again on the next pass.
_FOR_GOOD = (
    "exceedsblockgaslimit", "gaslimitexceedsblock", "exceedsthepergasblocklimit",
    "intrinsicgastoolow", "intrinsicgas", "invalidsignature", "invalidsender",
    "invalidchainid", "incompatiblechainid", "chainidmismatch", "wrongchainid",
    "oversizeddata", "transactiontoolarge", "txtoolarge", "exceedstheconfiguredcap",
    "exceedsmaxinitcodesize", "gaslimittoohigh", "gaslimitexceedsmaximum",
)


def _normalized(message: str) -> str:
    """Lower case without spaces, underscores and dashes: geth's "exceeds block gas limit",
    Besu's `EXCEEDS_BLOCK_GAS_LIMIT` and camel-cased forms read alike."""
    return "".join(c for c in message.lower() if c.isalnum())


BroadcastOutcome = Literal["accepted", "known", "superseded", "refused"]


def for_good(message: str) -> bool:
    """Whether the node's refusal of stored transaction bytes can never pass (`_FOR_GOOD`: a
    gas limit above the block's, an invalid signature or chain id, an oversized transaction, a
    fee above the node's cap), as opposed to one that may pass later: funds (Hardhat's "Sender
    doesn't have enough funds", geth's "insufficient funds", Besu's
    UPFRONT_COST_EXCEEDS_BALANCE), fees, a full pool, and any message not known here. A
    refusal wrongly taken as final would fail a row that could still land (and lose a client's
    rating or refund), so only the known final ones count; a temporary one leaves the
    transaction signed and the account's later nonces wait behind it until it passes."""
    lowered = _normalized(message)
    return any(word in lowered for word in _FOR_GOOD)

#: columns of an outbox row that say what it is about in a log line (those the row has)
ROW_LOG_COLUMNS = ("escrow_id", "milestone", "kind", "period", "breach_id")


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
    #: replacements signed (higher fees, or a nonce filler)
    replaced: int = 0

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
    #: the `Settings` field capping the gas of the phase's call (`relay_max_gas`, ...)
    gas_setting: str = ""

    def state(self, row: Any) -> str:
        return cast(str, getattr(row, self.state_attr))

    def link(self, row: Any, tx: OutboxTransaction | None) -> None:
        """Points the row at `tx` (its relationship is the link column without `_id`; a
        transaction not flushed yet gives the column its id at the flush)."""
        setattr(row, self.link_attr.removesuffix("_id"), tx)
        if tx is None or tx.id is not None:
            setattr(row, self.link_attr, None if tx is None else tx.id)

    def linked(self, row: Any) -> int | None:
        return cast("int | None", getattr(row, self.link_attr))


@dataclass(frozen=True)
class Loaded(Generic[RowT]):
    """A transaction read for a step of a pass: the row it carries, the phase, and the versions
    of its nonce (`backend.outbox.versions.nonce_versions`)."""

    tx: OutboxTransaction
    row: RowT
    phase: Phase
    versions: list[OutboxTransaction]


@dataclass(frozen=True)
class Call(Generic[RowT]):
    """A row's contract call to sign: the function `build` gave and its call data."""

    row: RowT
    #: a web3 `ContractFunction` (its `address`, and `estimate_gas` for `estimate_within`)
    fn: Any
    data: bytes


def hex0x(value: bytes) -> str:
    """Bytes as lower-case 0x hex."""
    return "0x" + bytes(value).hex()


def about(fields: dict[str, Any]) -> str:
    """`escrow 5 milestone 0`, `escrow 5 kind 1 period 2`: what a row is about, for a log line,
    from the `ROW_LOG_COLUMNS` in `fields`."""
    words = [
        f"{name.removesuffix('_id').replace('_', ' ')} {fields[name]}"
        for name in ROW_LOG_COLUMNS if name in fields
    ]
    return " ".join(words)


def row_about(row: OutboxRow) -> str:
    """`about` of an outbox row's own `ROW_LOG_COLUMNS` (`escrow 5 milestone 0`)."""
    return about({
        name: value for name in ROW_LOG_COLUMNS
        if (value := getattr(row, name, None)) is not None
    })


def fees_of(tx: OutboxTransaction) -> Fees:
    """The fee caps of a stored transaction (read from its bytes when not recorded)."""
    if tx.max_fee_per_gas is None:
        return Signed.decode(bytes(HexBytes(tx.raw_tx))).fees
    tip = tx.max_priority_fee_per_gas
    return Fees(int(tx.max_fee_per_gas), None if tip is None else int(tip))


def fill_reason(versions: list[OutboxTransaction]) -> str:
    """Why a row whose nonce a filler took fails: the node's refusal of its bytes, when that is
    why (a `refused` version's error), else `DEADLINE_PASSED`."""
    for version in versions:
        if version.status == REFUSED and version.error:
            return version.error
    return DEADLINE_PASSED


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
    #: rows built, simulated and signed together (`sign_batch`): all are built before any is
    #: signed, so a subclass whose `build` reads the rows signed before it says 1
    sign_together: ClassVar[int] = BATCH

    def __init__(
        self,
        services: Services,
        account: LocalAccount,
        *,
        hook: Hook[RowT] | None = None,
        confirmations: int | None = None,
        replace_after_blocks: int | None = None,
        max_fee_per_gas: int | None = None,
    ) -> None:
        settings = services.settings
        self.services = services
        self.w3 = services.w3
        self.clock = services.clock
        self.account = account
        self.address = account.address
        self.chain_id = services.chain_id
        self.hook = hook
        self.confirmations = settings.confirmations if confirmations is None else confirmations
        self.replace_after_blocks = (
            settings.replace_after_blocks if replace_after_blocks is None
            else replace_after_blocks
        )
        self.max_fee_per_gas = (
            settings.max_fee_per_gas if max_fee_per_gas is None else max_fee_per_gas
        )
        self._market: Market | None = None

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

    def deadline(self, row: RowT, phase: Phase) -> int | None:
        """The chain time (unix seconds) after which the row's call can only revert, if it has
        one (a signed confirmation's deadline); None: it never expires."""
        return None

    def prepare(self, report: SendReport) -> None:
        """Work before the pass signs (queueing rows, following mined ones up); none here."""

    def has_work(self) -> bool:
        """Whether a pass may have something to do; when not, it ends before asking the node
        anything (an idle sender that polls often costs the node nothing). By default a pass
        always runs (`prepare` may find work)."""
        return True

    def scope(self, row: RowT) -> tuple[int | None, str | None]:
        """Whom the row's transactions are sent for, recorded on each of them for the spend
        bounds (`backend/outbox/spend.py`): (escrow id, the party on whose behalf). By default
        the row's escrow, if it has one, and nobody."""
        escrow_id = getattr(row, "escrow_id", None)
        return (None if escrow_id is None else int(escrow_id), None)

    def over_budget(self, session: Session, row: RowT, phase: Phase, cost: int) -> str | None:
        """Why a transaction that costs at most `cost` wei (gas limit * max fee per gas) may not
        be signed for `row` (a spend bound it would pass), or None; no bound by default."""
        return None

    def gas_cap(self, phase: Phase) -> int | None:
        """The most gas the phase's call may use (the `Settings` field `phase.gas_setting`);
        None: only the block's gas limit."""
        if not phase.gas_setting:
            return None
        return int(getattr(self.services.settings, phase.gas_setting))

    # ----------------------------------------------------------------- passes

    def run_once(self) -> SendReport:
        """One pass: prepare, sign, broadcast, settle. Nothing at all while the chain no longer
        has the deployment served (`Services.deployment`): no old row is sent to a new chain."""
        report = SendReport()
        if not self.has_work():
            return report
        if self.services.deployment.check() is not None:
            return report
        self._market = None  # read the fee market afresh once per pass, when needed
        self.prepare(report)
        self.sign_pending(report)
        self.broadcast_signed(report)
        self.settle_sent(report)
        if report.replaced:
            self.broadcast_signed(report)  # the replacements just stored go out now
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
        with ownership(self.services, self.name, self.address, stop) as stop:
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
        self.note(row, error)

    def note(self, row: RowT, error: str | None) -> None:
        """Sets the row's `error` (a reason, or a note on what the sender is doing about it)."""
        row.error = error
        row.updated_at = self.clock.service_time()

    def fail(self, row: RowT, phase: Phase, error: ChainError) -> None:
        self.log_failed(row, phase, error.message)
        self.move(row, phase, phase.failed, error.message)

    def log_fields(self, row: RowT, tx: OutboxTransaction | None = None) -> dict[str, Any]:
        """The structured fields of a log line about `row` (`extra=`): `sender`, `chain_id`,
        `account`, `row_id`, the row's `ROW_LOG_COLUMNS` it has (escrow id, milestone, breach
        kind, period and id), and of its transaction `tx`: `tx_hash`, `nonce`, `purpose`,
        `max_fee_gwei` and `tip_gwei` (fee caps in gwei; the tip None on a legacy
        transaction)."""
        out: dict[str, Any] = {
            "sender": self.name, "chain_id": self.chain_id, "account": self.address,
            "row_id": row.id,
        }
        for name in ROW_LOG_COLUMNS:
            value = getattr(row, name, None)
            if value is not None:
                out[name] = value
        if tx is not None:
            fees = fees_of(tx)
            out.update(tx_hash=tx.tx_hash, nonce=tx.nonce, purpose=tx.purpose,
                       max_fee_gwei=gwei(fees.max_fee), tip_gwei=gwei(fees.tip))
        return out

    def log_failed(self, row: RowT, phase: Phase, reason: str) -> None:
        """The `row_failed` line: the row's `phase` gives up with `reason`."""
        fields = self.log_fields(row)
        logger.warning("%s row %s (%s) failed to %s: %s", self.name, row.id, about(fields),
                       phase.purpose, reason,
                       extra={"event": "row_failed", **fields, "reason": reason})

    def log_sent(self, tx: OutboxTransaction, row: RowT, *, again: bool = False) -> None:
        """The `tx_sent` line: the node took `tx` (`again`: the same bytes, which it had
        lost)."""
        fields = self.log_fields(row, tx)
        tip = "" if fields["tip_gwei"] is None else f", tip {fields['tip_gwei']:g} gwei"
        logger.info("%s sent %s%s (%s, nonce %s) for row %s (%s): max fee %s gwei%s",
                    self.name, tx.tx_hash, " again" if again else "", tx.purpose, tx.nonce,
                    row.id, about(fields), f"{fields['max_fee_gwei']:g}", tip,
                    extra={"event": "tx_sent", **fields, "again": again})

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
        if self.services.escrow.remembers(escrow_id):
            return True
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

    def market(self) -> Market:
        """The node's fee market, read once per pass."""
        if self._market is None:
            self._market = read_market(self.w3)
        return self._market

    # ----------------------------------------------------------------- 1. sign

    def sign_pending(self, report: SendReport) -> None:
        """Signs the due rows (`due`), `sign_together` rows per database transaction
        (`sign_batch`)."""
        with self.session() as session:
            ids = self.due(session)
        size = self.sign_together
        for start in range(0, len(ids), size):
            self.sign_batch(ids[start:start + size], self.phases[0], report)

    def sign(self, row_id: int, phase: Phase, report: SendReport) -> None:
        """`sign_batch` of one row."""
        self.sign_batch([row_id], phase, report)

    def sign_batch(self, row_ids: list[int], phase: Phase, report: SendReport) -> None:
        """Simulates and signs the transactions of `phase` of those rows of `row_ids` that are
        still `phase.pending`, in one database transaction under the nonce lock (consecutive
        nonces, in row order): the simulations are asked of the node in one JSON-RPC batch
        (`simulate`); bytes, hashes and fees are stored and committed before anything is sent.
        The hook meets each row that moved at "signing" (before the commit) and each signed one
        at "signed" (after it)."""
        moved: list[RowT] = []
        with self.session() as session, session.begin():
            nonce_row = take_nonce(session, self.chain_id, self.address, self.chain_nonce())
            calls: list[Call[RowT]] = []
            for row in self.lock_all(session, row_ids):
                if phase.state(row) != phase.pending:
                    continue
                fn = self.build(session, row, phase, report)
                if fn is not None:
                    calls.append(Call(row, fn, calldata(fn)))
                elif phase.state(row) != phase.pending:
                    moved.append(row)
            stored = self._stored_from(session, nonce_row.next_nonce)
            for call, simulated in zip(calls, self.simulate(calls, phase), strict=True):
                self._sign_call(session, nonce_row, call, phase, simulated, stored, report)
                if phase.state(call.row) != phase.pending:  # else nothing changed (too early)
                    moved.append(call.row)
            moved.sort(key=lambda r: r.id)
            for row in moved:
                self.step(phase, "signing", row)
        for row in moved:
            if phase.state(row) == phase.signed:
                self.step(phase, "signed", row)

    def lock_all(self, session: Session, row_ids: list[int]) -> list[RowT]:
        """The rows of `row_ids` that exist, under row locks, freshly read, in id order."""
        if not row_ids:
            return []
        model = self.model
        return cast("list[RowT]", list(session.scalars(
            select(model).where(model.id.in_(row_ids)).order_by(model.id)
            .with_for_update().execution_options(populate_existing=True)
        )))

    def _stored_from(self, session: Session, nonce: int) -> dict[str, OutboxTransaction]:
        """This account's stored transactions from `nonce` on, by hash: the only ones a
        transaction signed now (with `nonce` or a later one) can be identical to."""
        return {tx.tx_hash: tx for tx in session.scalars(
            select(OutboxTransaction).where(
                OutboxTransaction.chain_id == self.chain_id,
                OutboxTransaction.account == self.address,
                OutboxTransaction.nonce >= nonce,
            )
        )}

    def simulate(self, calls: list[Call[RowT]], phase: Phase) -> list[int | None]:
        """The gas each of `calls` needs, simulated from
        the sender's address with at most the phase's gas cap (and the block's gas limit): one
        `eth_estimateGas` per call, asked in JSON-RPC batches (`backend.chain.bulk_rpc.batch`).
        None for a call the node did not simulate successfully within the cap: `_sign_call`
        simulates it again on its own (`estimate_within`), which tells a revert from a call over
        the cap. A transport failure is raised."""
        if not calls or not bulk_rpc.speaks_batches(self.w3):
            return [None] * len(calls)  # (a provider without batches: each simulated alone)
        cap = self.gas_cap(phase)
        limit = self.market().gas_limit
        if cap is not None and limit is not None:
            cap = min(cap, limit)
        requests_: list[tuple[str, list[Any]]] = []
        for call in calls:
            params: dict[str, Any] = {
                "from": self.address, "to": call.fn.address, "data": hex0x(call.data),
            }
            if cap is not None:
                params["gas"] = hex(cap)
            requests_.append(("eth_estimateGas", [params]))
        try:
            replies = bulk_rpc.batch(self.w3, requests_)
        except Exception as exc:
            if is_transport_failure(exc):
                raise
            return [None] * len(calls)  # every call simulated again on its own
        out: list[int | None] = []
        for reply in replies:
            result = reply.get("result") if reply.get("error") is None else None
            out.append(None if result is None else bulk_rpc.quantity(result))
        return out

    def _sign_call(
        self, session: Session, nonce_row: Any, call: Call[RowT], phase: Phase,
        simulated: int | None, stored: dict[str, OutboxTransaction], report: SendReport,
    ) -> None:
        """Signs `call` with the next nonce, `simulated` the gas it needs (None: simulated here,
        within the phase's gas cap, `estimate_within`), after checking the spend bound
        (`over_budget`). A revert, a call over the cap and a spend over the bound use no nonce:
        the first goes to `refused`, the others fail the row with the reason. `stored`: the
        transactions a signature made now could be identical to (`_stored_from`)."""
        row, fn = call.row, call.fn
        market = self.market()
        cap = self.gas_cap(phase)
        if cap is not None and market.gas_limit is not None:
            cap = min(cap, market.gas_limit)
        try:
            if simulated is not None:
                gas = simulated
            elif cap is None:
                gas = int(fn.estimate_gas({"from": self.address}))
            else:
                gas = estimate_within(
                    fn, self.address, cap, what=f"{self.name} {phase.purpose} ({row_about(row)})",
                    setting=phase.gas_setting, block_gas_limit=market.gas_limit,
                )
        except REVERT_EXCEPTIONS as exc:
            self.refused(row, phase, as_chain_error(exc), report)
            return
        except ChainError as exc:
            if is_transport_failure(exc):
                raise
            self.refused(row, phase, exc, report)
            return
        limit = int(gas * GAS_MARGIN)
        for bound in (cap, market.gas_limit):
            if bound is not None:
                limit = max(min(limit, bound), gas)
        fees = initial_fees(market, self.max_fee_per_gas)
        refusal = self.over_budget(session, row, phase, limit * fees.max_fee)
        if refusal is not None:
            self.log_failed(row, phase, refusal)
            self.move(row, phase, phase.failed, refusal)
            report.failed += 1
            return
        self._store(session, call, phase, limit, nonce_row.next_nonce, fees, stored)
        nonce_row.next_nonce += 1
        report.signed += 1

    def _store(
        self, session: Session, call: Call[RowT], phase: Phase, gas: int, nonce: int,
        fees: Fees, stored: dict[str, OutboxTransaction],
    ) -> None:
        """Signs `call` with gas limit `gas` at `nonce` and `fees`, stores it (unless `stored`
        has it already) and points the row at it."""
        row = call.row
        signed = self.account.sign_transaction({
            "to": call.fn.address, "data": call.data, "value": 0, "nonce": nonce, "gas": gas,
            "chainId": self.chain_id, **fees.params(),
        })
        tx = stored.get(hex0x(signed.hash))
        if tx is not None:
            # Signatures are deterministic: the same call, nonce and fees give the same bytes,
            # e.g. a transaction a reorg took away whose nonce is free again. It is stored
            # already, and is the one sent again.
            if tx.status not in IN_FLIGHT:
                tx.status, tx.error, tx.updated_at = SIGNED, None, self.clock.service_time()
                tx.sent_block = tx.block_number = tx.block_hash = None
        else:
            # a row signed anew (its nonce went elsewhere, or a reorg took its transaction)
            # links the new transaction to the old one
            before = phase.linked(row)
            previous = None if before is None else session.get(OutboxTransaction, before)
            tx = self._new_tx(phase.purpose, nonce, signed, fees, previous, gas_limit=gas,
                              scope=self.scope(row))
            session.add(tx)  # inserted with the others of the batch at the commit
            stored[tx.tx_hash] = tx
        phase.link(row, tx)
        self.move(row, phase, phase.signed, None)

    def _new_tx(
        self, purpose: str, nonce: int, signed: Any, fees: Fees,
        previous: OutboxTransaction | None, *, gas_limit: int | None,
        scope: tuple[int | None, str | None],
    ) -> OutboxTransaction:
        now = self.clock.service_time()
        escrow_id, on_behalf_of = scope
        return OutboxTransaction(
            gas_limit=gas_limit, escrow_id=escrow_id, on_behalf_of=on_behalf_of,
            chain_id=self.chain_id, account=self.address, sender=self.name,
            purpose=purpose, nonce=nonce, raw_tx=hex0x(signed.raw_transaction),
            tx_hash=hex0x(signed.hash), status=SIGNED,
            max_fee_per_gas=str(fees.max_fee),
            max_priority_fee_per_gas=None if fees.tip is None else str(fees.tip),
            replaces_id=None if previous is None else previous.id,
            first_id=None if previous is None else previous.root_id,
            created_at=now, updated_at=now,
        )

    # ----------------------------------------------------------------- 2. broadcast

    def _locked(
        self, session: Session, tx: OutboxTransaction, row: RowT, phase: Phase
    ) -> tuple[OutboxTransaction, RowT] | None:
        """Both, under row locks, if no other pass moved them since they were read
        (`_lock_loaded` of one)."""
        found = self._lock_loaded(session, [Loaded(tx, row, phase, [])]).get(tx.id)
        return None if found is None else (found[0], found[1])

    def _loaded(self, status: str) -> list[Loaded[RowT]]:
        """This sender's transactions in `status` (at most `BATCH`), in nonce order, each with
        the row it carries, the phase and the versions of its nonce, read in one session with
        a few queries for all of them (a later step re-reads each under its lock,
        `_lock_loaded`, and skips what moved since)."""
        with self.session() as session:
            txs = list(session.scalars(
                select(OutboxTransaction)
                .where(
                    OutboxTransaction.chain_id == self.chain_id,
                    OutboxTransaction.account == self.address,
                    OutboxTransaction.sender == self.name,
                    OutboxTransaction.status == status,
                )
                .order_by(OutboxTransaction.nonce, OutboxTransaction.id)
                .limit(BATCH)
            ))
            histories = histories_of(session, txs)
            carriers = self._carriers(session, histories)
            out: list[Loaded[RowT]] = []
            for tx in txs:
                signed_for = histories.get(tx.root_id, [])
                found = next((carriers[t.id] for t in signed_for if t.id in carriers), None)
                if found is not None:
                    versions = [t for t in signed_for if t.nonce == tx.nonce]
                    out.append(Loaded(tx, found[0], found[1], versions))
        return out

    def _carriers(
        self, session: Session, histories: dict[int, list[OutboxTransaction]]
    ) -> dict[int, tuple[RowT, Phase]]:
        """The outbox rows (and phases) that point at a transaction of `histories` (a row points
        at one of the transactions signed for it in that phase), keyed by the id of the
        transaction each points at; one query per phase."""
        ids = [tx.id for signed_for in histories.values() for tx in signed_for]
        out: dict[int, tuple[RowT, Phase]] = {}
        if not ids:
            return out
        for phase in reversed(self.phases):  # the first phase of a row wins
            column = getattr(self.model, phase.link_attr)
            for row in session.scalars(select(self.model).where(column.in_(ids))):
                out[cast(int, phase.linked(row))] = (cast(RowT, row), phase)
        return out

    def _lock_loaded(
        self, session: Session, items: list[Loaded[RowT]]
    ) -> dict[int, tuple[OutboxTransaction, RowT, list[OutboxTransaction]]]:
        """`_locked` of many, in three queries: by the id of each item's transaction, the
        transaction and its row under row locks, with the transaction's `history`, for those no
        other pass moved since they were read."""
        if not items:
            return {}
        txs = {tx.id: tx for tx in session.scalars(
            select(OutboxTransaction)
            .where(OutboxTransaction.id.in_(sorted({item.tx.id for item in items})))
            .order_by(OutboxTransaction.id)
            .with_for_update().execution_options(populate_existing=True)
        )}
        rows = {row.id: row for row in self.lock_all(session, sorted({i.row.id for i in items}))}
        histories = histories_of(session, list(txs.values()))
        out: dict[int, tuple[OutboxTransaction, RowT, list[OutboxTransaction]]] = {}
        for item in items:
            locked_tx, locked = txs.get(item.tx.id), rows.get(item.row.id)
            if locked_tx is None or locked_tx.status != item.tx.status or locked is None:
                continue
            signed_for = histories.get(locked_tx.root_id, [])
            if item.phase.linked(locked) in {t.id for t in signed_for}:
                out[item.tx.id] = (locked_tx, locked, signed_for)
        return out

    def head(self) -> int:
        """The node's latest block number."""
        return int(self.w3.eth.block_number)

    def broadcast_signed(self, report: SendReport) -> None:
        """Broadcasts the signed transactions (`broadcast_all`: in nonce order, back to back,
        without waiting for receipts) and records what the node answered in one database
        transaction; after a refusal that leaves the transaction signed or refused nothing later
        is recorded (later nonces cannot be mined before it or its filler: a later pass sends
        them). The hook meets each row sent at "broadcast" (nothing recorded yet) and at "sent"
        (recorded)."""
        loaded = self._loaded(SIGNED)
        if not loaded:
            return
        head = self.head()  # before the sends: a transaction counts as unmined from here
        outcomes = self.broadcast_all(
            [item.tx for item in loaded],
            others_out=[any(v.status == SENT and v.id != item.tx.id for v in item.versions)
                        for item in loaded],
        )
        for item in loaded[:len(outcomes)]:
            self.step(item.phase, "broadcast", item.row)
        recorded: list[tuple[OutboxTransaction, RowT, Phase]] = []
        with self.session() as session, session.begin():
            locked = self._lock_loaded(session, loaded[:len(outcomes)])
            for item, (outcome, detail) in zip(loaded, outcomes, strict=False):
                if item.tx.id not in locked:
                    continue
                tx, row, signed_for = locked[item.tx.id]
                versions = [t for t in signed_for if t.nonce == tx.nonce]
                self._record(session, tx, row, item.phase, outcome, detail, report, head=head,
                             versions=versions)
                recorded.append((tx, row, item.phase))
                if outcome == "refused" and tx.status in (SIGNED, REFUSED):
                    break
        for tx, row, phase in recorded:
            if tx.status == SENT:
                report.broadcast += 1
                self.log_sent(tx, row)
                self.step(phase, "sent", row)

    def broadcast(self, tx: OutboxTransaction) -> tuple[BroadcastOutcome, str | None]:
        """`broadcast_all` of one transaction."""
        return self.broadcast_all([tx])[0]

    def broadcast_all(
        self, txs: list[OutboxTransaction], *, others_out: list[bool] | None = None
    ) -> list[tuple[BroadcastOutcome, str | None]]:
        """Sends the stored bytes of `txs` one after another (in their order, nonce order),
        without waiting for any to be mined; the outcome of each, and the node's words when it
        objected, up to and including the first refusal of a transaction with no other version
        of its nonce out there (`others_out`, per transaction: a refused fee replacement leaves
        the version it replaces; otherwise later nonces could not be mined before it, and they
        are not sent). One request each, not a JSON-RPC batch: a
        node may handle the calls of a batch concurrently (Hardhat does), and a later nonce
        that arrives first is refused ("nonce too high") where the node does not queue
        (automining).

        When the node objects ("already known", "nonce too low", or a node that reports a mined
        revert as an error) the transaction is looked up by its hash: if the node has it, it
        was sent; "nonce too low" with another version of the nonce mined counts as sent too
        (settling finds that version). Raises the transport error when the node is away (the
        whole step is retried later; what it sent is known to the node then)."""
        out: list[tuple[BroadcastOutcome, str | None]] = []
        for n, tx in enumerate(txs):
            out.append(self._outcome(tx, self._send_one(tx)))
            if out[-1][0] == "refused" and not (others_out is not None and others_out[n]):
                break
        return out

    def _send_one(self, tx: OutboxTransaction) -> str | None:
        """`eth_sendRawTransaction` of the stored bytes: None when the node took them, else its
        words (`bulk_rpc.error_message`)."""
        try:
            if bulk_rpc.speaks_batches(self.w3):  # the reply as it is, without web3's formatting
                [reply] = bulk_rpc.batch(self.w3, [("eth_sendRawTransaction", [tx.raw_tx])])
                return bulk_rpc.error_message(reply)
            self.w3.eth.send_raw_transaction(HexBytes(tx.raw_tx))
            return None
        except Exception as exc:
            if is_transport_failure(exc):
                raise
            return str(exc)

    def _outcome(
        self, tx: OutboxTransaction, message: str | None
    ) -> tuple[BroadcastOutcome, str | None]:
        if message is None:
            return "accepted", None
        if self.node_has(tx.tx_hash):
            return "known", message
        lowered = message.lower()
        if any(k in lowered for k in _NONCE_USED):
            with self.session() as session:
                versions = [t.tx_hash for t in nonce_versions(session, tx)]
            # mined (this version, which a node whose transaction index is pruned may not find
            # by hash, or another): settling finds which
            if any(self.receipt(h) is not None for h in versions):
                return "known", message
            return "superseded", message
        if any(k in lowered for k in _KNOWN):
            return "known", message
        logger.warning("node refused %s transaction %s (nonce %s): %s", self.name, tx.tx_hash,
                       tx.nonce, message,
                       extra={"event": "tx_refused", "sender": self.name, "chain_id": self.chain_id,
                              "account": self.address, "tx_hash": tx.tx_hash, "nonce": tx.nonce,
                              "purpose": tx.purpose, "reason": message})
        return "refused", message

    def node_has(self, tx_hash: str) -> bool:
        try:
            found = self.w3.eth.get_transaction(HexBytes(tx_hash))
        except TransactionNotFound:
            return False
        return found is not None

    def _record(
        self, session: Session, tx: OutboxTransaction, row: RowT, phase: Phase,
        outcome: BroadcastOutcome, detail: str | None, report: SendReport,
        *, head: int | None = None, versions: list[OutboxTransaction] | None = None,
    ) -> None:
        """Records the node's answer to the broadcast of `tx` (`head`: the latest block number
        read at the broadcast, else read here; `versions`: those of its nonce, when read
        already)."""
        now = self.clock.service_time()
        if versions is None:
            versions = nonce_versions(session, tx)
        if outcome in ("accepted", "known"):
            tx.status, tx.error, tx.updated_at = SENT, None, now
            if tx.sent_block is None:
                tx.sent_block = self.head() if head is None else head
            for other in versions:
                if other.id != tx.id and other.status == SENT:
                    other.status, other.updated_at = REPLACED, now
            if tx.purpose != FILL:  # a filler leaves the row's note (why the nonce is filled)
                self.move(row, phase, phase.sent, None)
        elif outcome == "superseded":
            # The nonce went to another transaction, so these bytes (and every version of the
            # nonce) can never be mined: they stay on record and the row is signed anew with a
            # fresh nonce; a nonce filler's call is dead anyway, so its row fails.
            for other in versions:
                if other.status in (SIGNED, SENT):
                    other.status, other.error, other.updated_at = SUPERSEDED, detail, now
            logger.warning("%s transaction %s lost its nonce %s to another transaction: %s",
                           self.name, tx.tx_hash, tx.nonce, detail,
                           extra={"event": "tx_superseded", **self.log_fields(row, tx),
                                  "reason": detail})
            if tx.purpose == FILL:
                reason = fill_reason(versions)
                self.log_failed(row, phase, reason)
                self.move(row, phase, phase.failed, reason)
                report.failed += 1
            else:
                self.move(row, phase, phase.pending,
                          f"nonce used by another transaction ({detail}); re-signing")
                report.requeued += 1
        elif tx.replaces_id is not None and any(v.status == SENT for v in versions):
            # A replacement the node would not take: the version it replaces is still out
            # there. It is dropped (never sent) and the next pass may outbid it.
            tx.status, tx.error, tx.updated_at = SUPERSEDED, f"replacement refused: {detail}", now
            live = [v for v in versions if v.status == SENT and v.purpose != FILL]
            if phase.linked(row) == tx.id and live:
                phase.link(row, live[-1])
            self.note(row, f"replacement refused: {detail}")
        elif tx.purpose != FILL and for_good(detail or ""):
            self._give_up(session, tx, row, phase, detail or "", report)
        else:
            tx.error, tx.updated_at = f"broadcast refused: {detail}", now
            self.move(row, phase, phase.state(row), f"broadcast refused: {detail}")

    def _give_up(
        self, session: Session, tx: OutboxTransaction, row: RowT, phase: Phase, detail: str,
        report: SendReport,
    ) -> None:
        """The node refused the stored bytes of `tx` for good (`for_good`): they can never be
        mined, so the transaction is `refused` and its nonce must not stay a gap that holds
        every later one. Under the nonce lock, in the caller's database transaction:

        - no later nonce of the account is in flight: the nonce goes back (`next_nonce`) to the
          next row signed, and the row fails now with `NODE_REFUSED` and the node's words;
        - later nonces are signed already (their stored bytes must stay the ones sent): a no-op
          transfer to itself (purpose `fill`, 21,000 gas) is signed for the nonce and stored,
          to be broadcast first; the row notes it and fails with the same reason once the filler
          is mined (as a deadline filler's row does), so it cannot be revived before.
        """
        nonce_row = take_nonce(session, self.chain_id, self.address, self.chain_nonce())
        now = self.clock.service_time()
        reason = f"{NODE_REFUSED}: {detail}"
        tx.status, tx.error, tx.updated_at = REFUSED, reason, now
        logger.warning("%s gives up transaction %s (nonce %s) for row %s (%s): %s", self.name,
                       tx.tx_hash, tx.nonce, row.id, row_about(row), reason,
                       extra={"event": "tx_refused_for_good", **self.log_fields(row, tx),
                              "reason": detail})
        later = session.scalar(
            select(OutboxTransaction.id).where(
                OutboxTransaction.chain_id == self.chain_id,
                OutboxTransaction.account == self.address,
                OutboxTransaction.status.in_(IN_FLIGHT),
                OutboxTransaction.nonce > tx.nonce,
            ).limit(1)
        )
        if later is None:
            nonce_row.next_nonce = min(nonce_row.next_nonce, tx.nonce)
            self.log_failed(row, phase, reason)
            self.move(row, phase, phase.failed, reason)
            report.failed += 1
            return
        fees = initial_fees(self.market(), self.max_fee_per_gas)
        signed = self.account.sign_transaction({
            "to": self.address, "value": 0, "data": b"", "gas": TRANSFER_GAS,
            "nonce": tx.nonce, "chainId": self.chain_id, **fees.params(),
        })
        filler = self._new_tx(FILL, tx.nonce, signed, fees, tx, gas_limit=TRANSFER_GAS,
                              scope=(tx.escrow_id, tx.on_behalf_of))
        session.add(filler)
        session.flush()
        self.note(row, f"{reason}; a no-op transfer takes nonce {tx.nonce} instead")
        report.replaced += 1
        self.step(phase, "replacing", row)

    # ----------------------------------------------------------------- 3. settle

    def settle_sent(self, report: SendReport) -> None:
        """Settles the sent transactions: the receipts of every version of their nonces are read
        in JSON-RPC batches (`backend.chain.bulk_rpc.receipts`), the head once; a nonce with no
        receipt goes to `_unmined` (reorg, lost, stuck), a shallow one has its block recorded,
        and those `ESCROW_CONFIRMATIONS` deep are settled in one database transaction. The hook
        meets each row settled at "receipt" (before the transaction) and "finished" (after)."""
        loaded = self._loaded(SENT)
        if not loaded:
            return
        receipts = bulk_rpc.receipts(self.w3, [v.tx_hash for item in loaded for v in item.versions])
        head = self.head()
        settling: list[tuple[Loaded[RowT], OutboxTransaction, TxReceipt, ChainError | None]] = []
        shallow: list[tuple[int, int, str]] = []
        for item in loaded:
            version = next((v for v in item.versions if v.tx_hash in receipts), None)
            if version is None:
                self._unmined(item.versions, item.row, item.phase, report)
                continue
            receipt = receipts[version.tx_hash]
            number, block_hash = int(receipt["blockNumber"]), hex0x(receipt["blockHash"])
            if head - number < self.confirmations:
                if (version.block_number, version.block_hash) != (number, block_hash):
                    shallow.append((version.id, number, block_hash))  # read again next pass
                continue
            error = None if int(receipt["status"]) == 1 else self.revert_reason(receipt)
            self.step(item.phase, "receipt", item.row)
            settling.append((item, version, receipt, error))
        if shallow:
            self._set_blocks(shallow)
        if not settling:
            return
        done: list[tuple[OutboxTransaction, RowT, Phase, TxReceipt, ChainError | None]] = []
        with self.session() as session, session.begin():
            locked = self._lock_loaded(session, [item for item, *_ in settling])
            for item, version, receipt, error in settling:
                if item.tx.id in locked:
                    found = self._settle(item, locked[item.tx.id], version, receipt, error,
                                         report)
                    if found is not None:
                        done.append((*found, item.phase, receipt, error))
        for mined, row, phase, receipt, error in done:
            self.log_mined(mined, row, receipt, head, error)
            self.step(phase, "finished", row)

    def _settle(
        self, item: Loaded[RowT],
        locked_item: tuple[OutboxTransaction, RowT, list[OutboxTransaction]],
        version: OutboxTransaction, receipt: TxReceipt, error: ChainError | None,
        report: SendReport,
    ) -> tuple[OutboxTransaction, RowT] | None:
        """Settles the nonce of `item` by `version`, mined in `receipt` (reverted with `error`),
        in the database transaction that locked it (`locked_item`: the transaction, its row
        and its history, `_lock_loaded`); the mined version and the row."""
        phase = item.phase
        locked_tx, locked, signed_for = locked_item
        versions = [t for t in signed_for if t.nonce == locked_tx.nonce]
        number, block_hash = int(receipt["blockNumber"]), hex0x(receipt["blockHash"])
        now = self.clock.service_time()
        mined: OutboxTransaction | None = None
        for other in versions:
            if other.id == version.id:
                other.status = MINED if error is None else REVERTED
                other.error = None if error is None else error.message
                other.block_number, other.block_hash = number, block_hash
                other.gas_used = int(receipt["gasUsed"])
                price = receipt.get("effectiveGasPrice")
                other.gas_price = None if price is None else str(int(price))
                other.updated_at = now
                mined = other
            elif other.status in (SIGNED, SENT):
                other.status, other.updated_at = SUPERSEDED, now
                other.error = f"nonce {other.nonce} went to {version.tx_hash}"
        if mined is None:
            return None
        if mined.purpose != FILL:
            phase.link(locked, mined)
        if mined.purpose == FILL:
            # a filler took the nonce: of a call whose deadline passed (the row is sent) or
            # of bytes the node refused for good (the row is signed or sent)
            if phase.state(locked) in (phase.signed, phase.sent):
                reason = fill_reason(versions)
                self.log_failed(locked, phase, reason)
                self.move(locked, phase, phase.failed, reason)
                report.failed += 1
        elif phase.state(locked) == phase.sent:
            self.settled(locked, phase, receipt, error, report)
        return mined, locked

    def log_mined(
        self, tx: OutboxTransaction, row: RowT, receipt: TxReceipt, head: int,
        error: ChainError | None,
    ) -> None:
        """The `tx_mined` line (INFO), or `tx_reverted` (WARNING, with the decoded reason): the
        block, how deep it is (`depth`: blocks on top of it, at least `ESCROW_CONFIRMATIONS`),
        the gas used and the price paid per gas."""
        fields = self.log_fields(row, tx)
        number = int(receipt["blockNumber"])
        price = receipt.get("effectiveGasPrice")
        fields.update(block=number, depth=head - number, confirmations=self.confirmations,
                      gas_used=int(receipt["gasUsed"]),
                      gas_price_gwei=None if price is None else gwei(int(price)))
        where = (f"in block {number}, {head - number} blocks deep (ESCROW_CONFIRMATIONS "
                 f"{self.confirmations}), gas used {fields['gas_used']}")
        what = f"{tx.purpose}, nonce {tx.nonce}"
        if error is None:
            logger.info("%s mined %s (%s) for row %s (%s) %s", self.name, tx.tx_hash, what,
                        row.id, about(fields), where, extra={"event": "tx_mined", **fields})
        else:
            logger.warning("%s transaction %s (%s) for row %s (%s) reverted %s: %s", self.name,
                           tx.tx_hash, what, row.id, about(fields), where, error.message,
                           extra={"event": "tx_reverted", **fields, "reason": error.message})

    def _set_block(self, tx_id: int, number: int | None, block_hash: str | None) -> None:
        """Records (or, after a reorg, clears) the block of a transaction's receipt."""
        self._set_blocks([(tx_id, number, block_hash)])

    def _set_blocks(self, blocks: Sequence[tuple[int, int | None, str | None]]) -> None:
        """`_set_block` of many (transaction id, block number, block hash), in one database
        transaction."""
        with self.session() as session, session.begin():
            now = self.clock.service_time()
            for tx_id, number, block_hash in blocks:
                tx = session.get(OutboxTransaction, tx_id, with_for_update=True)
                if tx is not None:
                    tx.block_number, tx.block_hash, tx.updated_at = number, block_hash, now

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None

    def _unmined(
        self, versions: list[OutboxTransaction], row: RowT, phase: Phase, report: SendReport
    ) -> None:
        """No version of the nonce has a receipt: forget a receipt a reorg took away, send
        again what the node lost, replace what stays unmined."""
        for version in versions:
            if version.block_number is not None:
                logger.warning("%s transaction %s left block %s (reorg); sending it again",
                               self.name, version.tx_hash, version.block_number,
                               extra={"event": "tx_reorged", **self.log_fields(row, version),
                                      "block": version.block_number})
                self._set_block(version.id, None, None)
        live = [v for v in versions if v.status in (SIGNED, SENT)]
        if not live or live[-1].status == SIGNED:
            return  # a replacement waits for the broadcast step
        newest = live[-1]
        if not self.node_has(newest.tx_hash):
            self._rebroadcast_lost(newest, row, phase, report)
            return
        self._replace_if_stuck(newest, versions, row, phase, report)

    def _rebroadcast_lost(
        self, tx: OutboxTransaction, row: RowT, phase: Phase, report: SendReport
    ) -> None:
        """The node no longer knows the transaction (dropped, or reorged out and forgotten):
        send the same bytes again."""
        outcome, detail = self.broadcast(tx)
        if outcome in ("accepted", "known"):
            self.log_sent(tx, row, again=True)
            return
        with self.session() as session, session.begin():
            both = self._locked(session, tx, row, phase)
            if both is not None:
                self._record(session, both[0], both[1], phase, outcome, detail, report)

    # ----------------------------------------------------------------- 4. replace

    def _replace_if_stuck(
        self, newest: OutboxTransaction, versions: list[OutboxTransaction], row: RowT,
        phase: Phase, report: SendReport,
    ) -> None:
        """Signs and stores a replacement of `newest` (the live version the node holds) when it
        is priced under the next base fee or unmined for `replace_after_blocks`, or a nonce
        filler when the row's deadline has passed; notes on the row why not when the fee
        ceiling leaves no room."""
        head = int(self.w3.eth.block_number)
        if newest.sent_block is None:  # sent before its block was recorded: count from now
            self._set_sent_block(newest.id, head)
            return
        deadline = self.deadline(row, phase)
        expired = deadline is not None and deadline < self.clock.chain_time()
        market = self.market()
        fill = expired or newest.purpose == FILL
        if expired and newest.purpose != FILL:
            reason = "deadline passed while unmined"
        elif market.under(fees_of(newest)):
            reason = f"priced under the base fee ({market.base_fee} wei)"
        elif head - newest.sent_block >= self.replace_after_blocks and newest.nonce <= int(
            self.w3.eth.get_transaction_count(self.address, "latest")
        ):  # (a later nonce waiting for an earlier one to be mined is not stuck itself)
            reason = f"unmined for {head - newest.sent_block} blocks"
        else:
            return
        current = Fees.highest([fees_of(v) for v in versions if v.status != REFUSED])
        fees = replacement_fees(current, market, self.max_fee_per_gas)
        if fees is None:
            what = "free its nonce" if fill else "replace it"
            note = (f"{reason}; the fee ceiling ({self.max_fee_per_gas} wei per gas) leaves no "
                    f"room to {what}; waiting for the base fee to fall")
            if row.error != note:
                self._note(row.id, note)
            return
        self._replace(newest, row, phase, fees, fill, reason, report)

    def _set_sent_block(self, tx_id: int, head: int) -> None:
        with self.session() as session, session.begin():
            tx = session.get(OutboxTransaction, tx_id, with_for_update=True)
            if tx is not None and tx.sent_block is None:
                tx.sent_block = head

    def _note(self, row_id: int, note: str) -> None:
        with self.session() as session, session.begin():
            row = self.lock(session, row_id)
            if row is not None:
                self.note(row, note)

    def _replace(
        self, newest: OutboxTransaction, row: RowT, phase: Phase, fees: Fees, fill: bool,
        reason: str, report: SendReport,
    ) -> None:
        """Signs the new version once and stores it (committed) before anything is sent."""
        stored = Signed.decode(bytes(HexBytes(newest.raw_tx)))
        fields_: dict[str, Any]
        if fill:
            fields_ = {
                "to": self.address, "value": 0, "data": b"", "gas": TRANSFER_GAS,
                "nonce": stored.nonce, "chainId": self.chain_id, **fees.params(),
            }
            note = f"{reason}; a no-op transfer takes nonce {stored.nonce} instead"
        else:
            fields_ = stored.with_fees(fees)
            note = f"{reason}; replaced with higher fees"
        signed = self.account.sign_transaction(fields_)
        with self.session() as session, session.begin():
            both = self._locked(session, newest, row, phase)
            if both is None:
                return
            locked_tx, locked = both
            tx = self._new_tx(FILL if fill else locked_tx.purpose, locked_tx.nonce, signed,
                              fees, locked_tx,
                              gas_limit=TRANSFER_GAS if fill else stored.gas,
                              scope=(locked_tx.escrow_id, locked_tx.on_behalf_of))
            session.add(tx)
            session.flush()
            if not fill:
                phase.link(locked, tx)
            self.note(locked, note)
            report.replaced += 1
            fields = self.log_fields(locked, tx)
            logger.info("%s replaces %s with %s (nonce %s, max fee %s gwei) for row %s (%s): %s",
                        self.name, locked_tx.tx_hash, tx.tx_hash, locked_tx.nonce,
                        f"{fields['max_fee_gwei']:g}", locked.id, about(fields), note,
                        extra={"event": "tx_replaced", **fields,
                               "replaced_tx_hash": locked_tx.tx_hash, "reason": reason})
            self.step(phase, "replacing", locked)
        self.step(phase, "replaced", locked)

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
    def waiting(cls) -> Any:
        """The SQL condition of a row still to be done: its first phase pending, signed or sent,
        or a later phase signed or sent (a later phase's `pending` is its resting state, e.g. a
        mined report not finalized yet)."""
        first = cls.phases[0]
        return or_(
            getattr(cls.model, first.state_attr).in_((first.pending, first.signed, first.sent)),
            *(
                getattr(cls.model, phase.state_attr).in_((phase.signed, phase.sent))
                for phase in cls.phases[1:]
            ),
        )

    @classmethod
    def backlog(cls, session: Session, chain_id: int) -> Backlog:
        """This sender's outbox on `chain_id` for `escrow status`: rows by status
        (`outbox_counts`), how many are still to be done (`waiting`) and the oldest of them
        by `created_at`."""
        model = cls.model
        waiting = int(session.scalar(
            select(func.count()).select_from(model)
            .where(model.chain_id == chain_id, cls.waiting())
        ) or 0)
        oldest = None if not waiting else session.scalars(
            select(model)
            .where(model.chain_id == chain_id, cls.waiting())
            .order_by(model.created_at, model.id)
            .limit(1)
        ).first()
        item = None if oldest is None else WaitingItem(
            str(oldest.id), cls.phase_of(oldest), int(oldest.created_at), row_about(oldest)
        )
        return Backlog(cls.outbox_counts(session, chain_id), waiting, item)

    @classmethod
    def phase_of(cls, row: OutboxRow) -> str:
        """The row's state, with the later phase's when that one is under way
        (`mined, finalize_sent`)."""
        states = [cast(str, getattr(row, cls.phases[0].state_attr))]
        for phase in cls.phases[1:]:
            state = phase.state(row)
            if state in (phase.signed, phase.sent):
                states.append(state)
        return ", ".join(states)

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
