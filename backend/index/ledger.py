"""Folding an escrow's events into its state and its money movements.

Pure functions, no I/O: the indexer uses them to keep the `escrow` projection, the API to show
milestones, breaches and balances, the statement export to list movements, and the auditor to
rebuild the history from the chain alone. Events must come in chain order (block, log index).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.chain.types import (
    BreachOutcome,
    BreachState,
    EscrowParams,
    MilestoneState,
    SettledHow,
    Status,
)
from backend.errors import QualityEscrowError


class LedgerError(QualityEscrowError, ValueError):
    """The events cannot be the history of one escrow (missing creation, unknown breach...)."""

    code = "ledger"


@dataclass(frozen=True)
class ChainEvent:
    """One decoded contract event with where it happened."""

    name: str
    args: Mapping[str, Any]
    block_number: int
    log_index: int
    tx_hash: str
    block_time: int = 0
    tx_index: int = 0

    def uint(self, key: str) -> int:
        return int(self.args[key])

    def hex(self, key: str) -> str:
        value = self.args[key]
        if isinstance(value, bytes):
            return "0x" + value.hex()
        return str(value).lower()


@dataclass(frozen=True)
class Movement:
    """One change of who is owed what. `kind` is one of: deposit, release, refund, reserve,
    breach_refund, breach_release, breach_payout, cancel_refund."""

    kind: str
    amount: int
    account: str  # who gains the credit (or the escrow itself for deposit / reserve)
    counterparty: str
    milestone: int | None
    breach_id: int | None
    block_number: int
    log_index: int
    tx_hash: str
    block_time: int


@dataclass
class MilestoneLedger:
    index: int
    amount: int
    state: MilestoneState = MilestoneState.NONE
    delivered_at: int | None = None
    delivery_hash: str | None = None
    disputed_at: int | None = None
    dispute_reason_hash: str | None = None
    settled_at: int | None = None
    settled_tx: str | None = None
    how: SettledHow | None = None
    rating: int | None = None
    comment_hash: str | None = None
    to_provider: int = 0
    to_client: int = 0


@dataclass
class BreachLedger:
    breach_id: int
    kind: int
    period: int
    evidence_hash: str
    reserve: int
    reported_at: int
    reported_tx: str
    state: BreachState = BreachState.REPORTED
    challenged_at: int | None = None
    settled_at: int | None = None
    outcome: BreachOutcome | None = None
    to_client: int = 0
    to_provider: int = 0


@dataclass
class EscrowLedger:
    escrow_id: int
    params: EscrowParams
    created_block: int
    created_tx: str
    created_at: int
    status: Status = Status.PROPOSED
    accepted_at: int | None = None
    locked: int = 0
    nominal: int = 0
    reserved: int = 0
    refunded: int = 0
    credited_provider: int = 0
    credited_client: int = 0
    last_block: int = 0
    milestones: list[MilestoneLedger] = field(default_factory=list)
    breaches: list[BreachLedger] = field(default_factory=list)
    movements: list[Movement] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.params.total

    def _move(
        self,
        ev: ChainEvent,
        kind: str,
        amount: int,
        account: str,
        counterparty: str,
        *,
        milestone: int | None = None,
        breach_id: int | None = None,
    ) -> None:
        if amount == 0:
            return
        self.movements.append(
            Movement(kind, amount, account, counterparty, milestone, breach_id,
                     ev.block_number, ev.log_index, ev.tx_hash, ev.block_time)
        )

    def _close_if_done(self) -> None:
        if self.nominal == 0 and self.reserved == 0:
            self.status = Status.CLOSED

    def apply(self, ev: ChainEvent) -> None:
        """Applies one event (not `EscrowCreated`, which starts the ledger)."""
        handler = _HANDLERS.get(ev.name)
        if handler is None:
            raise LedgerError(f"event {ev.name} does not belong to an escrow's history")
        handler(self, ev)
        self.last_block = max(self.last_block, ev.block_number)


def _on_accepted(led: EscrowLedger, ev: ChainEvent) -> None:
    led.status = Status.ACTIVE
    led.accepted_at = ev.block_time


def _on_cancelled(led: EscrowLedger, ev: ChainEvent) -> None:
    refund = ev.uint("refund")
    led._move(ev, "cancel_refund", refund, led.params.client, "escrow")
    led.credited_client += refund
    led.locked = led.nominal = 0
    led.status = Status.CLOSED


def _milestone(led: EscrowLedger, ev: ChainEvent) -> MilestoneLedger:
    index = ev.uint("milestone")
    if not 0 <= index < len(led.milestones):
        raise LedgerError(f"escrow {led.escrow_id} has no milestone {index}")
    return led.milestones[index]


def _on_delivered(led: EscrowLedger, ev: ChainEvent) -> None:
    m = _milestone(led, ev)
    m.state, m.delivered_at, m.delivery_hash = MilestoneState.DELIVERED, ev.block_time, ev.hex(
        "deliveryHash"
    )


def _on_disputed(led: EscrowLedger, ev: ChainEvent) -> None:
    m = _milestone(led, ev)
    m.state, m.disputed_at = MilestoneState.DISPUTED, ev.block_time
    m.dispute_reason_hash = ev.hex("reasonHash")


def _on_settled(led: EscrowLedger, ev: ChainEvent) -> None:
    m = _milestone(led, ev)
    if m.state == MilestoneState.SETTLED:
        raise LedgerError(f"milestone {m.index} of escrow {led.escrow_id} settled twice")
    to_provider, to_client = ev.uint("toProvider"), ev.uint("toClient")
    m.state, m.settled_at, m.settled_tx = MilestoneState.SETTLED, ev.block_time, ev.tx_hash
    m.how = SettledHow(ev.uint("how"))
    m.rating = ev.uint("rating") or None
    m.comment_hash = ev.hex("commentHash")
    m.to_provider, m.to_client = to_provider, to_client
    led.locked -= to_provider + to_client
    led.nominal -= m.amount
    led.credited_provider += to_provider
    led.credited_client += to_client
    p = led.params
    led._move(ev, "release", to_provider, p.provider, p.client, milestone=m.index)
    led._move(ev, "refund", to_client, p.client, p.provider, milestone=m.index)
    led._close_if_done()


def _on_breach_reported(led: EscrowLedger, ev: ChainEvent) -> None:
    breach_id, reserve = ev.uint("breachId"), ev.uint("reserved")
    if breach_id != len(led.breaches):
        raise LedgerError(f"escrow {led.escrow_id}: breach {breach_id} out of order")
    led.breaches.append(
        BreachLedger(breach_id, ev.uint("kind"), ev.uint("period"), ev.hex("evidenceHash"),
                     reserve, ev.block_time, ev.tx_hash)
    )
    led.locked -= reserve
    led.reserved += reserve
    led._move(ev, "reserve", reserve, "escrow", led.params.client, breach_id=breach_id)


def _breach(led: EscrowLedger, ev: ChainEvent) -> BreachLedger:
    breach_id = ev.uint("breachId")
    if not 0 <= breach_id < len(led.breaches):
        raise LedgerError(f"escrow {led.escrow_id} has no breach {breach_id}")
    return led.breaches[breach_id]


def _on_breach_challenged(led: EscrowLedger, ev: ChainEvent) -> None:
    b = _breach(led, ev)
    b.state, b.challenged_at = BreachState.CHALLENGED, ev.block_time


_OUTCOME_STATE = {
    BreachOutcome.FINALIZED: BreachState.FINALIZED,
    BreachOutcome.UPHELD: BreachState.UPHELD,
    BreachOutcome.REJECTED: BreachState.REJECTED,
    BreachOutcome.STALE_SPLIT: BreachState.STALE_SPLIT,
}


def _on_breach_settled(led: EscrowLedger, ev: ChainEvent) -> None:
    b = _breach(led, ev)
    outcome = BreachOutcome(ev.uint("outcome"))
    to_client, to_provider = ev.uint("toClient"), ev.uint("toProvider")
    b.state, b.outcome, b.settled_at = _OUTCOME_STATE[outcome], outcome, ev.block_time
    b.to_client, b.to_provider = to_client, to_provider
    released = b.reserve - to_client
    led.reserved -= b.reserve
    led.refunded += to_client
    led.credited_client += to_client
    led.credited_provider += to_provider
    # what is released goes back to `locked` unless it was paid to the provider
    led.locked += released - to_provider
    p = led.params
    led._move(ev, "breach_refund", to_client, p.client, p.provider, breach_id=b.breach_id)
    led._move(ev, "breach_payout", to_provider, p.provider, p.client, breach_id=b.breach_id)
    led._move(ev, "breach_release", released - to_provider, "escrow", p.client,
              breach_id=b.breach_id)
    led._close_if_done()


_HANDLERS = {
    "EscrowAccepted": _on_accepted,
    "EscrowCancelled": _on_cancelled,
    "DeliverySubmitted": _on_delivered,
    "DisputeOpened": _on_disputed,
    "MilestoneSettled": _on_settled,
    "BreachReported": _on_breach_reported,
    "BreachChallenged": _on_breach_challenged,
    "BreachSettled": _on_breach_settled,
}


def start(ev: ChainEvent) -> EscrowLedger:
    """A ledger from the escrow's `EscrowCreated` event."""
    if ev.name != "EscrowCreated":
        raise LedgerError(f"an escrow's history starts with EscrowCreated, not {ev.name}")
    params = EscrowParams.from_event(ev.args["params"])
    led = EscrowLedger(
        escrow_id=ev.uint("escrowId"),
        params=params,
        created_block=ev.block_number,
        created_tx=ev.tx_hash,
        created_at=ev.block_time,
        locked=params.total,
        nominal=params.total,
        last_block=ev.block_number,
        milestones=[MilestoneLedger(i, a) for i, a in enumerate(params.milestone_amounts)],
    )
    led._move(ev, "deposit", params.total, "escrow", params.client)
    return led


def fold(events: Iterable[ChainEvent]) -> EscrowLedger:
    """The ledger of one escrow from all its events, in chain order."""
    it = iter(events)
    first = next(it, None)
    if first is None:
        raise LedgerError("no events")
    led = start(first)
    for ev in it:
        led.apply(ev)
    return led
