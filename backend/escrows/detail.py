"""The detail of one escrow (`GET /api/escrows/{id}`): its events folded by
`backend.index.ledger` into
parameters, milestones, breaches and balances, with the stored reviews, milestone documents
(delivery documents, dispute reasons) and terms document.

It is the API's hot path, so it reads with prebuilt Core statements on one connection (a few
indexed reads; an ORM session costs several times more here) and keeps serialized bodies in a
`DetailCache` under the indexer's cursor (block number and hash). Everything folded into a body
comes from events up to that block, and a block hash fixes the whole history before it: while the
cursor reads the same, the body is the same, and a reorg or a chain reset moves the cursor to a
block with another hash. A body that still misses a document the database may receive later (the
terms document, a review) is not kept. A milestone document does not hold a body back: a
delivery or dispute reason hash is the party's own reference (often no document of ours), and the
document of `POST .../delivery` or `POST .../dispute` is stored before its transaction is sent;
storing one drops the escrow's body (`DetailCache.forget`) for the rare document stored after its
transaction was indexed.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.orm import Session

from backend.chain.tokens import TokenMetadata
from backend.chain.types import ZERO_HASH, BreachKind
from backend.db.models import ChainCursor, EventLog, Review, TermsDocument
from backend.errors import NotFoundError
from backend.escrows.listing import enum_name
from backend.escrows.milestone_documents import DELIVERY, DISPUTE, load_documents
from backend.index.ledger import BreachLedger, ChainEvent, EscrowLedger, MilestoneLedger, fold
from backend.inputs import parse_escrow_id

Db = Session | Connection
Version = tuple[int, str]
_ZERO_HASH_HEX = "0x" + ZERO_HASH.hex()

# built once: building a statement costs more than running one of these
_CURSOR = select(ChainCursor.block_number, ChainCursor.block_hash).where(
    ChainCursor.chain_id == bindparam("chain_id"), ChainCursor.contract == bindparam("contract")
)
_EVENTS = (
    select(
        EventLog.event,
        EventLog.args,
        EventLog.block_number,
        EventLog.log_index,
        EventLog.tx_hash,
        EventLog.block_time,
        EventLog.tx_index,
    )
    .where(EventLog.chain_id == bindparam("chain_id"), EventLog.escrow_id == bindparam("escrow"))
    .order_by(EventLog.block_number, EventLog.log_index)
)
_TERMS = select(TermsDocument.canonical).where(TermsDocument.terms_hash == bindparam("hash"))
_REVIEWS = select(Review.comment_hash, Review.canonical).where(
    Review.comment_hash.in_(bindparam("hashes", expanding=True))
)


def index_version(db: Db, chain_id: int, contract: str) -> Version | None:
    """The indexer's cursor (block number, block hash); `None` before the first sync."""
    row = db.execute(_CURSOR, {"chain_id": chain_id, "contract": contract}).first()
    return None if row is None else (int(row[0]), str(row[1]))


def load_ledger(db: Db, chain_id: int, escrow_id: int) -> EscrowLedger:
    """The escrow's events (the same rows as `backend.index.indexer.escrow_ledger`) folded; 404 when
    none are indexed."""
    rows = db.execute(_EVENTS, {"chain_id": chain_id, "escrow": parse_escrow_id(escrow_id)})
    events = [ChainEvent(*row) for row in rows]
    if not events:
        raise NotFoundError("escrow", escrow_id)
    return fold(events)


def load_reviews(db: Db, comment_hashes: Iterable[str]) -> dict[str, Any]:
    wanted = sorted({h for h in comment_hashes if h != _ZERO_HASH_HEX})
    if not wanted:
        return {}
    return {h: json.loads(text) for h, text in db.execute(_REVIEWS, {"hashes": wanted})}


def load_terms(db: Db, terms_hash: str) -> dict[str, Any] | None:
    text = db.execute(_TERMS, {"hash": terms_hash}).scalar()
    return None if text is None else dict(json.loads(text))


def milestone_json(
    m: MilestoneLedger,
    reviews: dict[str, Any],
    deliveries: dict[str, Any],
    disputes: dict[str, Any],
) -> dict[str, Any]:
    """One milestone with the stored review behind its `comment_hash`, the stored delivery
    document behind its `delivery_hash` and the stored dispute reason behind its
    `dispute_reason_hash` (each null when none is stored)."""
    return {
        "index": m.index,
        "amount": str(m.amount),
        "state": enum_name(m.state),
        "delivered_at": m.delivered_at,
        "delivery_hash": m.delivery_hash,
        "delivery": deliveries.get(m.delivery_hash) if m.delivery_hash else None,
        "disputed_at": m.disputed_at,
        "dispute_reason_hash": m.dispute_reason_hash,
        "dispute_reason": (
            disputes.get(m.dispute_reason_hash) if m.dispute_reason_hash else None
        ),
        "settled_at": m.settled_at,
        "settled_tx": m.settled_tx,
        "how": enum_name(m.how),
        "rating": m.rating,
        "comment_hash": m.comment_hash,
        "review": reviews.get(m.comment_hash) if m.comment_hash else None,
        "to_provider": str(m.to_provider),
        "to_client": str(m.to_client),
    }


def breach_json(b: BreachLedger) -> dict[str, Any]:
    kind = BreachKind(b.kind) if b.kind in {k.value for k in BreachKind} else None
    return {
        "id": b.breach_id,
        "kind": b.kind,
        "kind_name": enum_name(kind),
        "period": b.period,
        "evidence_hash": b.evidence_hash,
        "reserve": str(b.reserve),
        "state": enum_name(b.state),
        "reported_at": b.reported_at,
        "reported_tx": b.reported_tx,
        "challenged_at": b.challenged_at,
        "settled_at": b.settled_at,
        "outcome": enum_name(b.outcome),
        "to_client": str(b.to_client),
        "to_provider": str(b.to_provider),
    }


def escrow_detail(
    db: Db, chain_id: int, contract: str, escrow_id: int, tokens: TokenMetadata
) -> dict[str, Any]:
    """One escrow with its parameters, milestones, breaches, balances, reviews and terms."""
    led = load_ledger(db, chain_id, escrow_id)
    p = led.params
    reviews = load_reviews(db, (m.comment_hash for m in led.milestones if m.comment_hash))
    deliveries = load_documents(db, DELIVERY, (m.delivery_hash for m in led.milestones))
    disputes = load_documents(db, DISPUTE, (m.dispute_reason_hash for m in led.milestones))
    return {
        "id": led.escrow_id,
        "chain_id": chain_id,
        "contract": contract,
        "status": enum_name(led.status),
        "params": p.to_json(),
        "token": tokens.get(p.token).to_json(),
        "balances": {
            "total": str(led.total),
            "locked": str(led.locked),
            "nominal": str(led.nominal),
            "reserved": str(led.reserved),
            "refunded": str(led.refunded),
            "credited_provider": str(led.credited_provider),
            "credited_client": str(led.credited_client),
        },
        "milestones": [
            milestone_json(m, reviews, deliveries, disputes) for m in led.milestones
        ],
        "breaches": [breach_json(b) for b in led.breaches],
        "terms_document": load_terms(db, "0x" + p.terms_hash.hex()),
        "created_block": led.created_block,
        "created_tx": led.created_tx,
        "created_at": led.created_at,
        "accepted_at": led.accepted_at,
        "updated_block": led.last_block,
    }


# ------------------------------------------------------------------ cache


class DetailCache:
    """Serialized detail bodies per escrow, each with the cursor it was built at (LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[Version, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, escrow_id: int, version: Version) -> bytes | None:
        with self._lock:
            item = self._items.get(escrow_id)
            if item is None or item[0] != version:
                return None
            self._items.move_to_end(escrow_id)
            return item[1]

    def put(self, escrow_id: int, version: Version, body: bytes) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[escrow_id] = (version, body)
            self._items.move_to_end(escrow_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, escrow_id: int) -> None:
        """Drops the escrow's body (a document it shows was stored after it was built)."""
        with self._lock:
            self._items.pop(escrow_id, None)

    def __len__(self) -> int:
        return len(self._items)


def _complete(detail: dict[str, Any]) -> bool:
    """Every document the body refers to is in it (nothing can appear later)."""
    if detail["terms_document"] is None:
        return False
    return all(
        m["review"] is not None
        for m in detail["milestones"]
        if m["comment_hash"] is not None and m["comment_hash"] != _ZERO_HASH_HEX
    )


def escrow_detail_body(
    engine: Engine,
    chain_id: int,
    contract: str,
    escrow_id: int,
    tokens: TokenMetadata,
    cache: DetailCache,
) -> bytes:
    """`escrow_detail` as compact JSON bytes, from the cache while the index has not moved.

    One connection, one transaction: the cursor is read first, so a body is never filed under
    a cursor newer than the events it was folded from."""
    parse_escrow_id(escrow_id)
    with engine.connect() as conn:
        version = index_version(conn, chain_id, contract)
        if version is not None:
            cached = cache.get(escrow_id, version)
            if cached is not None:
                return cached
        detail = escrow_detail(conn, chain_id, contract, escrow_id, tokens)
    body = json.dumps(detail, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if version is not None and _complete(detail):
        cache.put(escrow_id, version, body)
    return body
