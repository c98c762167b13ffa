"""Acceptance acts: a printable certificate of completion for a settled milestone
(`GET /api/escrows/{id}/milestones/{m}/act.pdf`).

The facts come from the indexed ledger (`MilestoneSettled` and the escrow's parameters), the stored
review, and, for a settlement by signature, the settling transaction read back from the chain: its
`confirmWithSig` input is decoded with the contract's ABI and the EIP-712 signer recovered. Every
value printed is one anyone can re-check against the chain; the act says how.

The act is written in English, Russian or Spanish (`render_act(act, locale)`): its words come from
the Babel catalogue `acts` (`backend/locale/<locale>/LC_MESSAGES/acts.po`, through
`backend.i18n.translations`; English is the msgid), amounts are in the token's units written
for the locale (`backend.i18n.format_amount`) next to the exact base units, and times are in
UTC or in the IANA zone asked for, always naming the zone, next to the unix seconds. The text is
set in DejaVu Sans and DejaVu Sans Mono (the TrueType files matplotlib ships), embedded and
subset, so Latin, Cyrillic and Greek text (a review's comment, an attachment's name) prints as
written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import matplotlib
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]  # fpdf2 depends on it
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
from backend.i18n import DEFAULT_LOCALE, format_amount, supported, translations
from backend.index.indexer import escrow_events
from backend.index.ledger import ChainEvent, EscrowLedger, MilestoneLedger, fold
from backend.services import Services

ZERO_HASH = "0x" + "00" * 32
#: the Babel domain of the act's words (`backend/locale/<locale>/LC_MESSAGES/acts.po`)
DOMAIN = "acts"


def N_(message: str) -> str:  # noqa: N802 (the gettext marker Babel extracts)
    """Marks `message` for the catalogue where it is defined; `render_act` translates it."""
    return message


class MilestoneNotSettledError(AlreadyDoneError):
    """409: an act exists only for a settled milestone."""

    code = "not_settled"

    def __init__(self, escrow_id: int, milestone: int, state: str) -> None:
        self.what = f"milestone {milestone} of escrow {escrow_id}"
        QualityEscrowError.__init__(
            self, f"milestone {milestone} of escrow {escrow_id} is not settled (state {state})"
        )


@dataclass(frozen=True)
class Note:
    """A remark of the act in words to translate: a catalogue msgid with `%(name)s` fields."""

    message: str
    values: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class SignatureProof:
    """What the settling transaction says about the client's signature."""

    signature: str | None
    deadline: int | None
    signer: str | None
    #: why there is no signer (not a direct `confirmWithSig` call, unrecoverable signature)
    note: Note | None


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
        return SignatureProof(None, None, None, Note(
            N_("sent to %(to)s, not the escrow contract: the call is inside another contract "
               "(check it with debug_traceTransaction)"), {"to": to}))
    try:
        fn, args = services.escrow.contract.decode_function_input(tx["input"])
    except ValueError as exc:
        return SignatureProof(None, None, None,
                              Note(N_("input not decodable: %(error)s"), {"error": str(exc)}))
    if fn.fn_name != "confirmWithSig":
        return SignatureProof(None, None, None, Note(
            N_("settled by a call to %(function)s"), {"function": fn.fn_name}))
    signature = bytes(args["signature"])
    confirmation = Confirmation(
        int(args["escrowId"]), int(args["milestone"]), int(args["rating"]),
        bytes(args["commentHash"]), int(args["deadline"]),
    )
    shown = "0x" + signature.hex()
    if confirmation.escrow_id != escrow_id:
        return SignatureProof(shown, confirmation.deadline, None, Note(
            N_("the call confirms escrow %(escrow)s"), {"escrow": confirmation.escrow_id}))
    digest = confirmation.digest(services.chain_id, services.escrow.address)
    try:
        signer: str | None = recover_signer(digest, signature)
        note = None
    except InvalidSignature as exc:
        signer, note = None, Note(N_("no key recovered (%(error)s)"), {"error": str(exc)})
    if signer is not None and signer.lower() == client.lower():
        return SignatureProof(shown, confirmation.deadline, signer, None)
    before = max(settled.block_number - 1, 0)
    if has_code(services.w3, client, block=before) and is_valid_signature(
        services.w3, client, digest, signature, block=before
    ):
        return SignatureProof(shown, confirmation.deadline, client, Note(
            N_("the client is a contract wallet that accepts this signature (EIP-1271) at "
               "block %(block)s"), {"block": before}))
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
    SettledHow.CONFIRMED: N_("confirmed by the client's own transaction (confirm)"),
    SettledHow.SIGNED: N_("confirmed by the client's EIP-712 signature (confirmWithSig)"),
    SettledHow.TIMEOUT: N_("released after the review period passed (releaseAfterTimeout)"),
    SettledHow.DISPUTE_RESOLVED: N_("resolved by the arbiter"),
    SettledHow.STALE_DISPUTE: N_("released after an unresolved dispute went stale"),
    SettledHow.RECLAIMED: N_("reclaimed by the client after the delivery deadline"),
}

SANS = "DejaVuSans"
MONO = "DejaVuSansMono"
#: (family, style, file in matplotlib's `fonts/ttf/`): the act's fonts
FONT_FILES = (
    (SANS, "", "DejaVuSans.ttf"),
    (SANS, "B", "DejaVuSans-Bold.ttf"),
    (MONO, "", "DejaVuSansMono.ttf"),
)
#: the width of a field's label (mm); a longer label gets a line of its own
LABEL_WIDTH = 48.0
#: what stands for a character the fonts cannot draw (a CJK comment, say): visibly not dropped
MISSING_GLYPH = "\ufffd"


def font_dir() -> Path:
    """Where matplotlib (a dependency of the service) keeps its DejaVu TrueType fonts."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@cache
def _drawable(family: str, style: str) -> frozenset[int]:
    """The code points the act's font `family` in `style` has a glyph for."""
    name = next(n for f, s, n in FONT_FILES if (f, s) == (family, style))
    with TTFont(font_dir() / name, lazy=True) as font:
        return frozenset(font.getBestCmap())


def printable(text: str, family: str = SANS, style: str = "") -> str:
    """`text` as the act prints it in `family` and `style`: line breaks kept, tabs as spaces,
    and each character the font has no glyph for as U+FFFD (the PDF would otherwise drop it
    silently)."""
    drawable = _drawable(family, style)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ").split("\n")
    return "\n".join(
        "".join(c if ord(c) in drawable else MISSING_GLYPH for c in line) for line in lines
    )


@cache
def zone_names() -> frozenset[str]:
    """The IANA zone names an act can be dated in (the tz database zoneinfo sees; the host's
    own `localtime` is no IANA name)."""
    return frozenset(available_timezones() - {"localtime"})


def time_zone(name: str | None) -> tzinfo:
    """The zone an act writes its times in: UTC when `name` is None, else the IANA zone `name`
    (`Europe/Madrid`); raises ValueError for a name that is no such zone."""
    if name is None or name == "UTC":
        return UTC
    refusal = f"unknown time zone {name!r}: expected an IANA name such as Europe/Madrid"
    if name not in zone_names():
        raise ValueError(refusal)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(refusal) from exc


def format_time(timestamp: int, zone: tzinfo = UTC) -> str:
    """`2025-03-01 12:00:00 UTC`; in another zone the local time, its offset and the zone's
    name: `2025-03-01 15:00:00 UTC+03:00 (Europe/Moscow)`."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    if zone is UTC:
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} UTC{offset[:3]}:{offset[3:5]} ({zone})"


class _Words:
    """The act's words in one locale: `gettext` and `ngettext` of the `acts` catalogue, with the
    `%(name)s` fields filled in."""

    def __init__(self, locale: str) -> None:
        self.catalogue = translations(locale, DOMAIN)

    def gettext(self, message: str, **values: object) -> str:
        text = self.catalogue.gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: object) -> str:
        return self.catalogue.ngettext(singular, plural, n) % values


class _Doc:
    def __init__(self, created: int, locale: str, title: str) -> None:
        self.pdf = FPDF(format="A4")
        for family, style, name in FONT_FILES:
            self.pdf.add_font(family, style, font_dir() / name)
        self.pdf.set_creation_date(datetime.fromtimestamp(created, UTC))
        self.pdf.set_lang(locale)
        self.pdf.set_title(title)
        self.pdf.set_auto_page_break(auto=True, margin=15)
        self.pdf.add_page()
        self.face = (SANS, "")

    def _font(self, family: str, style: str, size: float) -> None:
        self.pdf.set_font(family, style, size)
        self.face = (family, style)

    def _lines(self, height: float, text: str) -> None:
        """`text` from the current position to the right margin, wrapped, left-aligned."""
        self.pdf.multi_cell(0, height, printable(text, *self.face), align="L",
                            new_x="LMARGIN", new_y="NEXT")

    def title(self, text: str) -> None:
        self._font(SANS, "B", 15)
        self._lines(8, text)
        self.pdf.ln(2)

    def heading(self, text: str) -> None:
        self.pdf.ln(3)
        self._font(SANS, "B", 12)
        self._lines(7, text)

    def field(self, label: str, value: str, *, mono: bool = False) -> None:
        """`label` in bold, `value` beside it (under it when the label is too long)."""
        self._font(SANS, "B", 9)
        label = printable(label, *self.face)
        if self.pdf.get_string_width(label) > LABEL_WIDTH - 2:
            self._lines(5, label)
            self.pdf.set_x(self.pdf.l_margin + LABEL_WIDTH)
        else:
            self.pdf.cell(LABEL_WIDTH, 5, label)
        if mono:
            self._font(MONO, "", 8)
        else:
            self._font(SANS, "", 9)
        self._lines(5, value)

    def paragraph(self, text: str) -> None:
        self._font(SANS, "", 9)
        self._lines(5, text)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def render_act(act: Act, locale: str = DEFAULT_LOCALE, zone: tzinfo = UTC) -> bytes:
    """The act as PDF bytes in `locale` (`en`, `ru`, `es`; any other: English) with its times in
    `zone` (deterministic for the same facts, locale and zone)."""
    locale = supported(locale) or DEFAULT_LOCALE
    words = _Words(locale)
    _, ngettext = words.gettext, words.ngettext
    led, m, token, ev = act.led, act.milestone, act.token, act.settled
    p = led.params

    def amount(value: int) -> str:
        return ngettext(
            "%(amount)s (%(units)s base unit)", "%(amount)s (%(units)s base units)", value,
            amount=format_amount(value, token.decimals, token.label, locale), units=value,
        )

    def when(timestamp: int) -> str:
        return _("%(time)s (unix %(unix)s)", time=format_time(timestamp, zone), unix=timestamp)

    title = _("Certificate of completion — escrow %(escrow)s, milestone %(milestone)s",
              escrow=led.escrow_id, milestone=m.index)
    doc = _Doc(ev.block_time, locale, title)
    doc.title(title)
    doc.heading(_("Parties"))
    doc.field(_("Client"), p.client, mono=True)
    doc.field(_("Provider"), p.provider, mono=True)
    doc.field(_("Oracle"), p.oracle, mono=True)
    doc.field(_("Arbiter"), p.arbiter, mono=True)
    doc.field(_("Terms hash"), led.params.to_json()["termsHash"], mono=True)
    doc.heading(_("Milestone"))
    doc.field(_("Milestone"), _("%(number)s of %(count)s (index %(index)s)",
                                number=m.index + 1, count=len(led.milestones), index=m.index))
    doc.field(_("Amount"), amount(m.amount))
    if token.decimals is None:
        token_text = _("%(token)s, decimals unknown, %(address)s",
                       token=token.label, address=token.address)
    else:
        token_text = ngettext(
            "%(token)s, %(decimals)s decimal, %(address)s",
            "%(token)s, %(decimals)s decimals, %(address)s", token.decimals,
            token=token.label, decimals=token.decimals, address=token.address,
        )
    doc.field(_("Token"), token_text)
    doc.field(_("Rating"), _("none") if m.rating is None else _("%(rating)s of 5", rating=m.rating))
    how = _HOW.get(m.how) if m.how else None
    doc.field(_("Settled"), _(how) if how else str(m.how or ""))
    doc.heading(_("Split paid"))
    doc.field(_("To provider"), amount(m.to_provider))
    doc.field(_("To client"), amount(m.to_client))
    doc.heading(_("Review"))
    doc.field("commentHash", m.comment_hash or ZERO_HASH, mono=True)
    if m.comment_hash in (None, ZERO_HASH):
        doc.paragraph(_("No review: the client left no comment and no attachments."))
    elif act.review is None:
        doc.paragraph(_("The review bound by this commentHash is not stored in this service."))
    else:
        doc.field(_("Comment"), str(act.review.get("comment", "")))
        for a in act.review.get("attachments", []):
            doc.field(_("Attachment"), ngettext(
                "%(name)s (%(media_type)s, %(size)s byte)",
                "%(name)s (%(media_type)s, %(size)s bytes)", int(a["size"]),
                name=a["name"], media_type=a["media_type"], size=a["size"],
            ))
            doc.field("  sha256", str(a["sha256"]), mono=True)
    if act.proof is not None:
        doc.heading(_("Client's signature (EIP-712)"))
        doc.field(_("Signature"), act.proof.signature or _("not available"), mono=True)
        if act.proof.deadline is not None:
            doc.field(_("Deadline"), when(act.proof.deadline))
        doc.field(_("Recovered signer"), act.proof.signer or _("not recovered"), mono=True)
        if act.proof.signer is not None:
            same = act.proof.signer.lower() == p.client.lower()
            doc.field(_("Signer is client"), _("yes") if same else _("NO"))
        if act.proof.note:
            doc.field(_("Note"), _(act.proof.note.message, **act.proof.note.values))
    doc.heading(_("On chain"))
    doc.field(_("Transaction"), ev.tx_hash, mono=True)
    doc.field(_("Block"), str(ev.block_number))
    doc.field(_("Time"), when(ev.block_time))
    doc.field(_("Contract"), act.contract, mono=True)
    doc.field(_("Chain id"), str(act.chain_id))
    doc.heading(_("How to verify this against the chain"))
    doc.paragraph(_(
        "Fetch the receipt of transaction %(tx)s from any node of chain %(chain)s: it must be "
        "in block %(block)s and carry a MilestoneSettled event of contract %(contract)s with "
        "escrowId %(escrow)s, milestone %(milestone)s, rating %(rating)s, commentHash "
        "%(comment_hash)s, toProvider %(to_provider)s and toClient %(to_client)s. The escrow's "
        "EscrowCreated event gives the parties and amounts above. For a settlement by "
        "signature, decode the transaction's input with the contract's ABI (confirmWithSig), "
        "compute the EIP-712 digest of Confirmation(escrowId, milestone, rating, commentHash, "
        "deadline) under the domain 'QualityEscrow' version 1 of chain %(chain)s and this "
        "contract, and recover the signer: it must be the client. The commentHash is the "
        "keccak256 of the RFC 8785 canonical JSON "
        '{"comment", "attachments": [{"name", "media_type", "size", "sha256"}]}, and each '
        "attachment file re-hashes to its sha256. `escrow audit ESCROW_ID` runs all of these "
        "checks.",
        tx=ev.tx_hash, chain=act.chain_id, block=ev.block_number, contract=act.contract,
        escrow=led.escrow_id, milestone=m.index, rating=m.rating or 0,
        comment_hash=m.comment_hash or ZERO_HASH, to_provider=m.to_provider,
        to_client=m.to_client,
    ))
    return doc.output()


def act_pdf(
    session: Session,
    services: Services,
    tokens: TokenMetadata,
    escrow_id: int,
    milestone: int,
    *,
    locale: str = DEFAULT_LOCALE,
    zone: tzinfo = UTC,
) -> tuple[bytes, str]:
    """The act's PDF bytes in `locale` with times in `zone`, and its file name."""
    act = load_act(session, services, tokens, escrow_id, milestone)
    return render_act(act, locale, zone), act.filename
