"""Acceptance acts: a printable certificate of completion for a settled milestone
(`GET /api/escrows/{id}/milestones/{m}/act.pdf`).

The facts come from the indexed ledger (`MilestoneSettled` and the escrow's parameters), the stored
review, and, for a settlement by signature, the settling transaction read back from the chain: its
`confirmWithSig` input is decoded with the contract's ABI and the EIP-712 signer recovered. Every
value printed is one anyone can re-check against the chain; the act says how.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fpdf import FPDF
from hexbytes import HexBytes
from sqlalchemy.orm import Session

from backend.chain.eip712 import Confirmation, recover_signer
from backend.chain.erc1271 import has_code, is_valid_signature
from backend.chain.errors import InvalidSignature, from_node
from backend.chain.tokens import TokenInfo, TokenMetadata
from backend.chain.types import MilestoneState, SettledHow
from backend.db.models import Review
from backend.errors import AlreadyDoneError, NotFoundError, QualityEscrowError
from backend.escrows.statements import iso_time
from backend.index.indexer import escrow_events
from backend.index.ledger import ChainEvent, EscrowLedger, MilestoneLedger, fold
from backend.services import Services

ZERO_HASH = "0x" + "00" * 32


class MilestoneNotSettledError(AlreadyDoneError):
    """409: an act exists only for a settled milestone."""

    code = "not_settled"

    def __init__(self, escrow_id: int, milestone: int, state: str) -> None:
        self.what = f"milestone {milestone} of escrow {escrow_id}"
        QualityEscrowError.__init__(
            self, f"milestone {milestone} of escrow {escrow_id} is not settled (state {state})"
        )


@dataclass(frozen=True)
class SignatureProof:
    """What the settling transaction says about the client's signature."""

    signature: str | None
    deadline: int | None
    signer: str | None
    #: why there is no signer (not a direct `confirmWithSig` call, unrecoverable signature)
    note: str | None


@dataclass(frozen=True)
class Act:
    chain_id: int
    contract: str
    led: EscrowLedger
    milestone: MilestoneLedger
    token: TokenInfo
    settled: ChainEvent
    review: dict[str, Any] | None
    proof: SignatureProof | None

    @property
    def filename(self) -> str:
        return (
            f"escrow-{self.chain_id}-{self.led.escrow_id}-milestone-{self.milestone.index}"
            "-act.pdf"
        )


# ------------------------------------------------------------------ facts


def _settled_event(events: list[ChainEvent], milestone: int) -> ChainEvent:
    for ev in events:
        if ev.name == "MilestoneSettled" and ev.uint("milestone") == milestone:
            return ev
    # a SETTLED milestone is folded from this very event, so the index is inconsistent
    raise NotFoundError("MilestoneSettled event", milestone)


def signature_proof(
    services: Services, settled: ChainEvent, escrow_id: int, client: str
) -> SignatureProof:
    """Decodes the settling transaction's `confirmWithSig` call and names its signer: the key
    recovered from the signature (ECDSA), or, when that is not the client, the client's contract
    wallet if it accepts the signature (EIP-1271, asked at the block before the settlement).
    Raises `NodeUnavailable` (503) when the node does not answer."""
    tx_hash = settled.tx_hash
    tx = from_node("settling transaction", lambda: services.w3.eth.get_transaction(
        HexBytes(tx_hash)))
    to = str(tx.get("to") or "")
    if to.lower() != services.escrow.address.lower():
        return SignatureProof(None, None, None,
                              f"sent to {to}, not the escrow contract: the call is inside "
                              "another contract (check it with debug_traceTransaction)")
    try:
        fn, args = services.escrow.contract.decode_function_input(tx["input"])
    except ValueError as exc:
        return SignatureProof(None, None, None, f"input not decodable: {exc}")
    if fn.fn_name != "confirmWithSig":
        return SignatureProof(None, None, None, f"settled by a call to {fn.fn_name}")
    signature = bytes(args["signature"])
    confirmation = Confirmation(
        int(args["escrowId"]), int(args["milestone"]), int(args["rating"]),
        bytes(args["commentHash"]), int(args["deadline"]),
    )
    shown = "0x" + signature.hex()
    if confirmation.escrow_id != escrow_id:
        return SignatureProof(shown, confirmation.deadline, None,
                              f"the call confirms escrow {confirmation.escrow_id}")
    digest = confirmation.digest(services.chain_id, services.escrow.address)
    try:
        signer: str | None = recover_signer(digest, signature)
        note = None
    except InvalidSignature as exc:
        signer, note = None, f"no key recovered ({exc})"
    if signer is not None and signer.lower() == client.lower():
        return SignatureProof(shown, confirmation.deadline, signer, None)
    before = max(settled.block_number - 1, 0)
    if has_code(services.w3, client, block=before) and is_valid_signature(
        services.w3, client, digest, signature, block=before
    ):
        return SignatureProof(
            shown, confirmation.deadline, client,
            f"the client is a contract wallet that accepts this signature (EIP-1271) at "
            f"block {before}",
        )
    return SignatureProof(shown, confirmation.deadline, signer, note)


def load_act(
    session: Session, services: Services, tokens: TokenMetadata, escrow_id: int, milestone: int
) -> Act:
    """The facts of the act; 404 for an unknown escrow or milestone, 409 when not settled."""
    events = escrow_events(session, services.chain_id, escrow_id)
    if not events:
        raise NotFoundError("escrow", escrow_id)
    led = fold(events)
    if not 0 <= milestone < len(led.milestones):
        raise NotFoundError("milestone", f"{escrow_id}/{milestone}")
    m = led.milestones[milestone]
    if m.state != MilestoneState.SETTLED:
        raise MilestoneNotSettledError(escrow_id, milestone, m.state.name.lower())
    settled = _settled_event(events, milestone)
    review = None
    if m.comment_hash and m.comment_hash != ZERO_HASH:
        row = session.get(Review, m.comment_hash.lower())
        review = None if row is None else json.loads(row.canonical)
    proof = (
        signature_proof(services, settled, escrow_id, led.params.client)
        if m.how == SettledHow.SIGNED
        else None
    )
    return Act(services.chain_id, services.escrow.address, led, m,
               tokens.get(led.params.token), settled, review, proof)


# ------------------------------------------------------------------ rendering

_HOW = {
    SettledHow.CONFIRMED: "confirmed by the client's own transaction (confirm)",
    SettledHow.SIGNED: "confirmed by the client's EIP-712 signature (confirmWithSig)",
    SettledHow.TIMEOUT: "released after the review period passed (releaseAfterTimeout)",
    SettledHow.DISPUTE_RESOLVED: "resolved by the arbiter",
    SettledHow.STALE_DISPUTE: "released after an unresolved dispute went stale",
    SettledHow.RECLAIMED: "reclaimed by the client after the delivery deadline",
}


def _text(value: str) -> str:
    """What the PDF's core fonts can print (Latin-1); other characters become `?`."""
    return value.encode("latin-1", errors="replace").decode("latin-1")


class _Doc:
    def __init__(self, created: int) -> None:
        self.pdf = FPDF(format="A4")
        self.pdf.set_creation_date(datetime.fromtimestamp(created, UTC))
        self.pdf.set_auto_page_break(auto=True, margin=15)
        self.pdf.add_page()

    def title(self, text: str) -> None:
        self.pdf.set_font("Helvetica", "B", 16)
        self.pdf.multi_cell(0, 9, _text(text), new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(2)

    def heading(self, text: str) -> None:
        self.pdf.ln(3)
        self.pdf.set_font("Helvetica", "B", 12)
        self.pdf.cell(0, 7, _text(text), new_x="LMARGIN", new_y="NEXT")

    def field(self, label: str, value: str, *, mono: bool = False) -> None:
        self.pdf.set_font("Helvetica", "B", 9)
        self.pdf.cell(42, 5, _text(label))
        self.pdf.set_font("Courier" if mono else "Helvetica", "", 8 if mono else 9)
        self.pdf.multi_cell(0, 5, _text(value), new_x="LMARGIN", new_y="NEXT")

    def paragraph(self, text: str) -> None:
        self.pdf.set_font("Helvetica", "", 9)
        self.pdf.multi_cell(0, 5, _text(text), new_x="LMARGIN", new_y="NEXT")

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def _amount(token: TokenInfo, amount: int) -> str:
    return f"{token.format_amount(amount)} {token.label} ({amount} base units)"


def render_act(act: Act) -> bytes:
    """The act as PDF bytes (deterministic for the same facts)."""
    led, m, token, ev = act.led, act.milestone, act.token, act.settled
    p = led.params
    doc = _Doc(ev.block_time)
    doc.title(f"Certificate of completion - escrow {led.escrow_id}, milestone {m.index}")
    doc.heading("Parties")
    doc.field("Client", p.client, mono=True)
    doc.field("Provider", p.provider, mono=True)
    doc.field("Oracle", p.oracle, mono=True)
    doc.field("Arbiter", p.arbiter, mono=True)
    doc.field("Terms hash", led.params.to_json()["termsHash"], mono=True)
    doc.heading("Milestone")
    doc.field("Milestone", f"{m.index + 1} of {len(led.milestones)} (index {m.index})")
    doc.field("Amount", _amount(token, m.amount))
    doc.field("Token", f"{token.label}, {token.decimals} decimals, {token.address}")
    doc.field("Rating", "none" if m.rating is None else f"{m.rating} of 5")
    doc.field("Settled", _HOW.get(m.how, str(m.how)) if m.how else "")
    doc.heading("Split paid")
    doc.field("To provider", _amount(token, m.to_provider))
    doc.field("To client", _amount(token, m.to_client))
    doc.heading("Review")
    doc.field("commentHash", m.comment_hash or ZERO_HASH, mono=True)
    if m.comment_hash in (None, ZERO_HASH):
        doc.paragraph("No review: the client left no comment and no attachments.")
    elif act.review is None:
        doc.paragraph("The review bound by this commentHash is not stored in this service.")
    else:
        doc.field("Comment", str(act.review.get("comment", "")))
        for a in act.review.get("attachments", []):
            doc.field("Attachment", f"{a['name']} ({a['media_type']}, {a['size']} bytes)")
            doc.field("  sha256", str(a["sha256"]), mono=True)
    if act.proof is not None:
        doc.heading("Client's signature (EIP-712)")
        doc.field("Signature", act.proof.signature or "not available", mono=True)
        if act.proof.deadline is not None:
            doc.field("Deadline", f"{act.proof.deadline} ({iso_time(act.proof.deadline)})")
        doc.field("Recovered signer", act.proof.signer or "not recovered", mono=True)
        if act.proof.signer is not None:
            verdict = "yes" if act.proof.signer.lower() == p.client.lower() else "NO"
            doc.field("Signer is client", verdict)
        if act.proof.note:
            doc.field("Note", act.proof.note)
    doc.heading("On chain")
    doc.field("Transaction", ev.tx_hash, mono=True)
    doc.field("Block", str(ev.block_number))
    doc.field("Time", f"{iso_time(ev.block_time)} (unix {ev.block_time})")
    doc.field("Contract", act.contract, mono=True)
    doc.field("Chain id", str(act.chain_id))
    doc.heading("How to verify this against the chain")
    doc.paragraph(
        f"Fetch the receipt of transaction {ev.tx_hash} from any node of chain {act.chain_id}: "
        f"it must be in block {ev.block_number} and carry a MilestoneSettled event of contract "
        f"{act.contract} with escrowId {led.escrow_id}, milestone {m.index}, rating "
        f"{m.rating or 0}, commentHash {m.comment_hash or ZERO_HASH}, toProvider "
        f"{m.to_provider} and toClient {m.to_client}. The escrow's EscrowCreated event gives "
        "the parties and amounts above. For a settlement by signature, decode the transaction's "
        "input with the contract's ABI (confirmWithSig), compute the EIP-712 digest of "
        "Confirmation(escrowId, milestone, rating, commentHash, deadline) under the domain "
        f"'QualityEscrow' version 1 of chain {act.chain_id} and this contract, and recover "
        "the signer: it must be the client. The commentHash is the keccak256 of the RFC 8785 "
        "canonical JSON "
        '{"comment", "attachments": [{"name", "media_type", "size", "sha256"}]}, and each '
        "attachment file re-hashes to its sha256. `escrow audit ESCROW_ID` runs all of these "
        "checks."
    )
    return doc.output()


def act_pdf(
    session: Session, services: Services, tokens: TokenMetadata, escrow_id: int, milestone: int
) -> tuple[bytes, str]:
    """The act's PDF bytes and file name."""
    act = load_act(session, services, tokens, escrow_id, milestone)
    return render_act(act), act.filename
