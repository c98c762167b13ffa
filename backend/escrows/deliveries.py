"""The provider's delivery document (`POST /api/escrows/{id}/milestones/{m}/delivery`): a note
and uploaded attachments, bound on-chain as the `deliveryHash` of `submitDelivery`.

The document is the RFC 8785 canonical JSON `{"note": "...", "attachments": [{"name",
"media_type", "size", "sha256"}]}` (attachments in the given order, each uploaded first through
`POST /api/attachments`), stored under its keccak256 like a review (`backend.confirmations.reviews`
supplies the attachment checks and lookups, and the content-addressed insert). The contract does
not check a delivery hash: a hash sent without a stored document is shown with `delivery: null`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak
from sqlalchemy.orm import Session

from backend.canonical import canonical_json
from backend.chain.client import EscrowClient
from backend.chain.clock import service_time
from backend.confirmations.reviews import (
    attachments_json,
    check_attachment_list,
    check_text,
    insert_once,
)
from backend.db.models import DeliveryDocument
from backend.errors import OutOfRangeError
from backend.escrows.actions import action_tx

#: the most characters of a delivery note
MAX_DELIVERY_NOTE_CHARS = 2_000


@dataclass(frozen=True)
class Delivery:
    """A delivery document, its canonical bytes and their keccak256."""

    document: dict[str, Any]
    canonical: bytes
    delivery_hash: bytes

    @property
    def delivery_hash_hex(self) -> str:
        return "0x" + self.delivery_hash.hex()


def delivery_document(note: str, attachments: list[dict[str, Any]]) -> Delivery:
    """The canonical document of `note` and the attachments (`attachment_json` form)."""
    document = {"note": note, "attachments": attachments}
    canonical = canonical_json(document)
    return Delivery(document, canonical, keccak(canonical))


def build_delivery(session: Session, note: str, digests: list[str] | tuple[str, ...]) -> Delivery:
    """The checked document: a note of at most 2,000 characters (413; 400 for a lone
    surrogate), at most 10 distinct stored attachments (413, 422, 404 for an unknown one), and
    not empty (422: a note or an attachment is needed)."""
    check_text("note", note, MAX_DELIVERY_NOTE_CHARS)
    known = check_attachment_list(digests)
    if note.strip() == "" and not known:
        raise OutOfRangeError("note", note, "a note or at least one attachment")
    return delivery_document(note, attachments_json(session, known))


def store_delivery(session: Session, delivery: Delivery, *, now: int | None = None) -> None:
    """Keeps the document's canonical text under its hash (once)."""
    insert_once(session, DeliveryDocument, {
        "delivery_hash": delivery.delivery_hash_hex,
        "canonical": delivery.canonical.decode("utf-8"),
        "created_at": service_time() if now is None else now,
    })


def prepare_delivery(
    session: Session,
    escrow: EscrowClient,
    chain_id: int,
    escrow_id: int,
    milestone: int,
    note: str,
    digests: list[str] | tuple[str, ...],
) -> dict[str, Any]:
    """`{delivery_hash, document, tx}`: the document stored, and the provider's `deliver`
    transaction carrying its hash (404 for an escrow not indexed or a milestone it lacks, as
    `tx/deliver`). The document is checked before the escrow, and stored only when both pass."""
    delivery = build_delivery(session, note, digests)
    tx = action_tx(session, escrow, chain_id, escrow_id, "deliver",
                   {"milestone": milestone, "deliveryHash": delivery.delivery_hash_hex})
    store_delivery(session, delivery)
    return {"delivery_hash": delivery.delivery_hash_hex, "document": delivery.document, "tx": tx}
