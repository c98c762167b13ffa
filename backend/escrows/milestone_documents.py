"""The parties' documents of a milestone, bound on-chain as a hash the contract does not check:

- the provider's delivery document (`POST /api/escrows/{id}/milestones/{m}/delivery`), the
  `deliveryHash` of `submitDelivery`: `{"note": "...", "attachments": [...]}`;
- the client's dispute reason (`POST /api/escrows/{id}/milestones/{m}/dispute`), the
  `reasonHash` of `openDispute`: `{"reason": "...", "attachments": [...]}`.

Both are RFC 8785 canonical JSON with `attachments` as `[{"name", "media_type", "size",
"sha256"}]` (in the given order, each uploaded first through `POST /api/attachments`), stored
once under their keccak256 with their kind in `milestone_document`, like a review
(`backend.confirmations.reviews` supplies the attachment checks and lookups and the
content-addressed insert). The text is at most 2,000 characters and may be empty when there is
an attachment. The escrow detail (`backend.escrows.detail`) shows the stored document of the
right kind behind a milestone's hash; a hash sent without a stored document shows as null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from backend.canonical import canonical_json
from backend.chain.client import EscrowClient
from backend.chain.clock import service_time
from backend.chain.types import ZERO_HASH
from backend.confirmations.reviews import (
    attachments_json,
    check_attachment_list,
    check_text,
    insert_once,
)
from backend.db.models import MilestoneDocument
from backend.errors import OutOfRangeError
from backend.escrows.actions import action_tx

#: the most characters of a document's text (a delivery note, a dispute reason)
MAX_TEXT_CHARS = 2_000
MAX_DELIVERY_NOTE_CHARS = MAX_TEXT_CHARS
MAX_DISPUTE_REASON_CHARS = MAX_TEXT_CHARS
_ZERO_HASH_HEX = "0x" + ZERO_HASH.hex()


@dataclass(frozen=True)
class DocumentKind:
    """One kind of milestone document and the transaction that carries its hash."""

    #: stored in `milestone_document.kind`
    name: str
    #: the document's text field
    text: str
    #: the `tx/{action}` whose hash argument it is, and that argument
    action: str
    hash_arg: str
    #: the answer's key for the hash
    answer_hash: str


DELIVERY = DocumentKind("delivery", "note", "deliver", "deliveryHash", "delivery_hash")
DISPUTE = DocumentKind("dispute", "reason", "dispute", "reasonHash", "reason_hash")
KINDS = {kind.name: kind for kind in (DELIVERY, DISPUTE)}


@dataclass(frozen=True)
class MilestoneDoc:
    """A milestone document, its canonical bytes and their keccak256."""

    kind: DocumentKind
    document: dict[str, Any]
    canonical: bytes
    document_hash: bytes

    @property
    def hash_hex(self) -> str:
        return "0x" + self.document_hash.hex()


def milestone_document(
    kind: DocumentKind, text: str, attachments: list[dict[str, Any]]
) -> MilestoneDoc:
    """The canonical document of `text` and the attachments (`attachment_json` form)."""
    document = {kind.text: text, "attachments": attachments}
    canonical = canonical_json(document)
    return MilestoneDoc(kind, document, canonical, keccak(canonical))


def build_document(
    session: Session, kind: DocumentKind, text: str, digests: list[str] | tuple[str, ...]
) -> MilestoneDoc:
    """The checked document: a text of at most 2,000 characters (413; 400 for a lone
    surrogate), at most 10 distinct stored attachments (413, 422, 404 for an unknown one), and
    not empty (422: a text or an attachment is needed)."""
    check_text(kind.text, text, MAX_TEXT_CHARS)
    known = check_attachment_list(digests)
    if text.strip() == "" and not known:
        raise OutOfRangeError(kind.text, text, f"a {kind.text} or at least one attachment")
    return milestone_document(kind, text, attachments_json(session, known))


def store_document(session: Session, doc: MilestoneDoc, *, now: int | None = None) -> None:
    """Keeps the document's canonical text under its hash (once)."""
    insert_once(session, MilestoneDocument, {
        "document_hash": doc.hash_hex,
        "kind": doc.kind.name,
        "canonical": doc.canonical.decode("utf-8"),
        "created_at": service_time() if now is None else now,
    })


def prepare_document(
    session: Session,
    escrow: EscrowClient,
    chain_id: int,
    escrow_id: int,
    milestone: int,
    kind: DocumentKind,
    text: str,
    digests: list[str] | tuple[str, ...],
) -> dict[str, Any]:
    """`{delivery_hash | reason_hash, document, tx}`: the document stored, and the party's
    transaction carrying its hash (`deliver` or `dispute`, exactly as `tx/{action}` answers;
    404 for an escrow not indexed or a milestone it lacks). The document is checked before the
    escrow, and stored only when both pass."""
    doc = build_document(session, kind, text, digests)
    tx = action_tx(session, escrow, chain_id, escrow_id, kind.action,
                   {"milestone": milestone, kind.hash_arg: doc.hash_hex})
    store_document(session, doc)
    return {kind.answer_hash: doc.hash_hex, "document": doc.document, "tx": tx}


# the detail's read, built once (it is on the hot path of `GET /api/escrows/{id}`)
_DOCUMENTS = select(MilestoneDocument.document_hash, MilestoneDocument.canonical).where(
    MilestoneDocument.kind == bindparam("kind"),
    MilestoneDocument.document_hash.in_(bindparam("hashes", expanding=True)),
)


def load_documents(
    db: Session | Connection, kind: DocumentKind, hashes: Iterable[str | None]
) -> dict[str, Any]:
    """The stored documents of `kind` among `hashes` (None and the zero hash skipped), by
    hash."""
    wanted = sorted({h for h in hashes if h and h != _ZERO_HASH_HEX})
    if not wanted:
        return {}
    rows = db.execute(_DOCUMENTS, {"kind": kind.name, "hashes": wanted})
    return {h: json.loads(text) for h, text in rows}
