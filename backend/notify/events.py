"""From indexed contract events to queued webhook deliveries.

`webhook_listener` runs inside the indexer's transaction (an `Indexer` listener): each new
`EventLog` row becomes zero or more notifications, each with a key that names the logical event
("milestone_settled:<chain>:<escrow>:<milestone>"), so an event seen again after a restart or a
reorg is not notified twice: `webhook_delivery` is unique by (subscription, event key).
`scan_review_deadlines` is the periodic part: delivered milestones whose review window ends within
the lead time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from backend.chain.clock import service_time
from backend.chain.types import ZERO_ADDRESS, MilestoneState, SettledHow
from backend.db.models import EscrowRow, EventLog, WebhookDelivery, WebhookSubscription
from backend.index.indexer import escrow_ledger
from backend.notify.webhooks import (
    BREACH_REPORTED,
    CREDIT_AVAILABLE,
    DELIVERY_SUBMITTED,
    MILESTONE_SETTLED,
    REVIEW_DEADLINE_NEAR,
)

logger = logging.getLogger(__name__)

#: seconds an event may precede a subscription and still be sent to it (indexer lag)
STALE_GRACE = 3_600
#: deliveries per INSERT (bound parameters stay far below SQLite's and PostgreSQL's limits)
_INSERT_BATCH = 500


@dataclass(frozen=True)
class Notification:
    """One logical event for some parties; `payload` is completed per delivery."""

    event_type: str
    event_key: str
    #: (address, role) pairs; role is "client" or "provider"
    recipients: tuple[tuple[str, str], ...]
    payload: dict[str, Any]
    #: block time of the event; events older than a subscription (less `STALE_GRACE`) are not
    #: sent to it, so rebuilding the index does not flood new subscribers with history
    occurred_at: int | None = None


def _base(row: EventLog, escrow: EscrowRow) -> dict[str, Any]:
    return {
        "chain_id": row.chain_id,
        "contract": row.contract,
        "escrow_id": row.escrow_id,
        "client": escrow.client,
        "provider": escrow.provider,
        "token": escrow.token,
        "block_number": row.block_number,
        "block_time": row.block_time,
        "tx_hash": row.tx_hash,
        "log_index": row.log_index,
    }


def _credit(
    row: EventLog, escrow: EscrowRow, account: str, role: str, amount: int, source: dict[str, Any]
) -> Notification:
    what = ":".join(str(v) for v in source.values())
    return Notification(
        CREDIT_AVAILABLE,
        f"{CREDIT_AVAILABLE}:{row.chain_id}:{row.escrow_id}:{what}:{account}",
        ((account, role),),
        {**_base(row, escrow), "account": account, "amount": str(amount), "source": source},
    )


def notifications_for(row: EventLog, escrow: EscrowRow) -> list[Notification]:
    """What one contract event tells whom."""
    args, key = row.args, f"{row.chain_id}:{row.escrow_id}"
    terms = escrow.params["terms"]
    client, provider = (escrow.client, "client"), (escrow.provider, "provider")
    base = _base(row, escrow)
    out: list[Notification] = []
    if row.event == "DeliverySubmitted":
        m = int(args["milestone"])
        out.append(Notification(DELIVERY_SUBMITTED, f"{DELIVERY_SUBMITTED}:{key}:{m}", (client,), {
            **base,
            "milestone": m,
            "amount": escrow.params["milestoneAmounts"][m],
            "delivery_hash": args["deliveryHash"],
            "review_deadline": row.block_time + int(terms["reviewPeriod"]),
        }))
    elif row.event == "BreachReported":
        b = int(args["breachId"])
        out.append(Notification(BREACH_REPORTED, f"{BREACH_REPORTED}:{key}:{b}", (provider,), {
            **base,
            "breach_id": b,
            "kind": int(args["kind"]),
            "period": int(args["period"]),
            "evidence_hash": args["evidenceHash"],
            "reserved": args["reserved"],
            "challenge_deadline": row.block_time + int(terms["challengePeriod"]),
            "can_challenge": escrow.arbiter != ZERO_ADDRESS,
        }))
    elif row.event == "MilestoneSettled":
        m = int(args["milestone"])
        how = SettledHow(int(args["how"]))
        to_provider, to_client = int(args["toProvider"]), int(args["toClient"])
        out.append(Notification(MILESTONE_SETTLED, f"{MILESTONE_SETTLED}:{key}:{m}",
                                (client, provider), {
            **base,
            "milestone": m,
            "how": how.name.lower(),
            "rating": int(args["rating"]),
            "comment_hash": args["commentHash"],
            "to_provider": str(to_provider),
            "to_client": str(to_client),
        }))
        source = {"event": "milestone_settled", "milestone": m}
        if to_provider:
            out.append(_credit(row, escrow, escrow.provider, "provider", to_provider, source))
        if to_client:
            out.append(_credit(row, escrow, escrow.client, "client", to_client, source))
    elif row.event == "BreachSettled":
        source = {"event": "breach_settled", "breach_id": int(args["breachId"])}
        if int(args["toClient"]):
            out.append(_credit(row, escrow, escrow.client, "client", int(args["toClient"]), source))
        if int(args["toProvider"]):
            out.append(
                _credit(row, escrow, escrow.provider, "provider", int(args["toProvider"]), source)
            )
    elif row.event == "EscrowCancelled" and int(args["refund"]):
        source = {"event": "escrow_cancelled"}
        out.append(_credit(row, escrow, escrow.client, "client", int(args["refund"]), source))
    return [replace(n, occurred_at=row.block_time) for n in out]


# ------------------------------------------------------------------ queueing


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    """Inserts the deliveries whose (subscription, event key) is not queued yet; returns how
    many were new. ON CONFLICT DO NOTHING keeps the surrounding transaction healthy."""
    if not rows:
        return 0
    stmt: Any
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = pg_insert(WebhookDelivery).values(rows).on_conflict_do_nothing(
            index_elements=["subscription_id", "event_key"]
        )
    elif dialect == "sqlite":
        stmt = sqlite_insert(WebhookDelivery).values(rows).on_conflict_do_nothing(
            index_elements=["subscription_id", "event_key"]
        )
    else:
        existing = {
            (sub_id, key)
            for sub_id, key in session.execute(
                select(WebhookDelivery.subscription_id, WebhookDelivery.event_key).where(
                    WebhookDelivery.event_key.in_({r["event_key"] for r in rows})
                )
            )
        }
        rows = [r for r in rows if (r["subscription_id"], r["event_key"]) not in existing]
        if not rows:
            return 0
        stmt = insert(WebhookDelivery).values(rows)
    return len(session.execute(stmt.returning(WebhookDelivery.id)).all())


def enqueue(
    session: Session, notifications: Iterable[Notification], *, queued_at: int | None = None
) -> int:
    """Queues one delivery per (notification, matching active subscription); returns how many
    were new. Deliveries are due at once (`queued_at`, default the wall clock)."""
    notes = list(notifications)
    addresses = {addr for n in notes for addr, _ in n.recipients}
    if not addresses:
        return 0
    subs = session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.active.is_(True), WebhookSubscription.address.in_(addresses)
        )
    ).all()
    if not subs:
        return 0
    now = service_time() if queued_at is None else queued_at
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for note in notes:
        for address, role in note.recipients:
            for sub in subs:
                if sub.address != address or note.event_type not in sub.events:
                    continue
                if note.occurred_at is not None and note.occurred_at < sub.created_at - STALE_GRACE:
                    continue
                delivery_id = str(uuid.uuid4())
                payload = {
                    **note.payload,
                    "event": note.event_type,
                    "event_key": note.event_key,
                    "delivery_id": delivery_id,
                    "recipient": address,
                    "role": role,
                }
                rows.setdefault((sub.id, note.event_key), {
                    "id": delivery_id,
                    "subscription_id": sub.id,
                    "event_type": note.event_type,
                    "event_key": note.event_key,
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_error": None,
                    "delivered_at": None,
                    "created_at": now,
                })
    pending = list(rows.values())
    queued = sum(
        _insert_new(session, pending[i : i + _INSERT_BATCH])
        for i in range(0, len(pending), _INSERT_BATCH)
    )
    if queued:
        logger.info("queued %d webhook deliveries", queued)
    return queued


def _any_subscription(session: Session) -> bool:
    return (
        session.scalar(
            select(WebhookSubscription.id).where(WebhookSubscription.active.is_(True)).limit(1)
        )
        is not None
    )


def webhook_listener(session: Session, rows: Sequence[EventLog]) -> None:
    """`Indexer` listener: queues the notifications of freshly stored events in the indexer's
    own transaction (so they commit, or roll back, with the events)."""
    if not rows or not _any_subscription(session):
        return
    notes: list[Notification] = []
    for row in rows:
        if row.escrow_id is None:
            continue
        escrow = session.get(EscrowRow, (row.chain_id, row.escrow_id))
        if escrow is not None:
            notes.extend(notifications_for(row, escrow))
    enqueue(session, notes)


def scan_review_deadlines(
    session: Session, chain_id: int, *, now: int, lead_time: int, queued_at: int | None = None
) -> int:
    """Queues `review_deadline_near` for every delivered, undisputed, unsettled milestone whose
    review window (delivery time + review period) ends within `lead_time` of `now` (chain time)
    and is still open. Returns how many deliveries were new."""
    subscribed = {
        s.address
        for s in session.scalars(
            select(WebhookSubscription).where(WebhookSubscription.active.is_(True))
        )
        if REVIEW_DEADLINE_NEAR in s.events
    }
    if not subscribed:
        return 0
    escrows = session.scalars(
        select(EscrowRow).where(
            EscrowRow.chain_id == chain_id,
            EscrowRow.status == "active",
            EscrowRow.client.in_(subscribed),
        )
    ).all()
    notes: list[Notification] = []
    for escrow in escrows:
        ledger = escrow_ledger(session, chain_id, escrow.escrow_id)
        if ledger is None:
            continue
        review = ledger.params.terms.review_period
        for m in ledger.milestones:
            if m.state != MilestoneState.DELIVERED or m.delivered_at is None:
                continue
            deadline = m.delivered_at + review
            if not deadline - lead_time <= now <= deadline:
                continue
            key = f"{REVIEW_DEADLINE_NEAR}:{chain_id}:{escrow.escrow_id}:{m.index}"
            notes.append(Notification(REVIEW_DEADLINE_NEAR, key, ((escrow.client, "client"),), {
                "chain_id": chain_id,
                "escrow_id": escrow.escrow_id,
                "client": escrow.client,
                "provider": escrow.provider,
                "token": escrow.token,
                "milestone": m.index,
                "amount": str(m.amount),
                "delivered_at": m.delivered_at,
                "review_deadline": deadline,
                "seconds_left": deadline - now,
            }))
    return enqueue(session, notes, queued_at=queued_at)
