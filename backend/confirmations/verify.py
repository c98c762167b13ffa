"""Every check a confirmation passes before anything is stored or sent (`docs/interface.md`).

In order: the body's own values (422 rating, 413 comment and attachment count, 422 / 413 the
shape of `criteria`, 400 signature encoding), the escrow and milestone (404), the deadline (410),
whether the milestone can still be confirmed (409 queued, settled, disputed or escrow not active;
410 review window closed), the criteria against the escrow's terms (409 terms not stored, 422 not
one per acceptance criterion), the attachments (404), then the signature: the recovered signer
must be the escrow's client (403 otherwise, naming every signed field and the value the service
signed over), canonical (low s, v 27/28; 400 otherwise), or, for a contract-wallet client, its
EIP-1271 `isValidSignature` must answer the magic value (`backend.chain.erc1271`; 403 otherwise,
503 when the node is down) and then the real `confirmWithSig` the relayer will send must succeed
when simulated from the relayer's address within `ESCROW_RELAY_MAX_GAS` (`check_relay`: a wallet
may answer a plain call cheaply and burn gas, or refuse, only when the escrow asks it; 403
`wallet_refused` or 422 `gas_over_cap`), so a confirmation the relayer cannot send is refused
before it is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from eth_typing import ChecksumAddress
from sqlalchemy.orm import Session

from backend.chain.eip712 import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    Confirmation,
    parse_signature,
    recover_signer,
)
from backend.chain.errors import InvalidSignature
from backend.chain.revert_types import EscrowInvalidSignature
from backend.chain.transactions import PROBE_FACTOR
from backend.chain.types import EscrowParams, EscrowView, MilestoneState, MilestoneView, Status
from backend.confirmations.chain_reader import ChainReader, ChainSnapshot
from backend.confirmations.outbox import ensure_not_queued
from backend.confirmations.reviews import (
    CriterionAnswer,
    ReviewDoc,
    build_review,
    check_attachment_list,
    check_comment,
    check_criteria_count,
    parse_criteria,
)
from backend.errors import (
    AlreadyDoneError,
    DeadlinePassedError,
    ForbiddenSignerError,
    MalformedInputError,
    NotFoundError,
    OutOfRangeError,
    QualityEscrowError,
    TooLargeError,
)
from backend.escrows.payouts import MilestonePayout, milestone_payout
from backend.inputs import UINT256_MAX, parse_escrow_id
from backend.oracle.measurements import TermsNotStoredError
from backend.oracle.terms import parse_terms
from backend.oracle.terms_store import terms_document

#: a deadline left out of a typed-data request lies this far ahead
DEFAULT_DEADLINE_SECONDS = 3_600
#: the bound of a signature's bytes: a plain key signs 65 (checked by the ECDSA rules), a contract
#: wallet answers for itself whatever the length (a Safe signs 65 bytes per owner, so this holds
#: about a thousand owners); only the size of a request body bounds it
MAX_SIGNATURE_BYTES = 64 * 1024


class WalletRefusedError(ForbiddenSignerError):
    """403: the client is a contract wallet and its `isValidSignature` did not agree (EIP-1271).
    The wallet judged the digest of the fields in `expected_fields`, which the message lists."""

    code = "wallet_refused"

    def __init__(self, wallet: str, expected_fields: dict[str, str] | None = None) -> None:
        self.signer = "(contract wallet)"
        self.expected = wallet
        self.expected_fields = dict(expected_fields or {})
        shown = ", ".join(f"{name}={value}" for name, value in self.expected_fields.items())
        QualityEscrowError.__init__(
            self,
            f"the client's contract wallet {wallet} does not accept this signature (EIP-1271)"
            + (f" over the digest of: {shown}" if shown else ""),
        )


class WalletRelayRefusedError(WalletRefusedError):
    """403 `wallet_refused`: the client's contract wallet accepts the signature when asked
    directly, but the relayer's `confirmWithSig` reverts with `EscrowInvalidSignature` when
    simulated from the relayer's address: the wallet refuses the escrow, or needs more gas to
    answer than the relayer would give it (`probed`)."""

    def __init__(self, wallet: str, relayer: str, probed: int) -> None:
        self.signer = "(contract wallet)"
        self.expected = wallet
        self.expected_fields = {}
        self.relayer = relayer
        self.probed = probed
        QualityEscrowError.__init__(
            self,
            f"the client's contract wallet {wallet} accepts this signature when asked directly, "
            f"but not when the escrow asks it: confirmWithSig simulated from the relayer "
            f"{relayer} with at most {probed:,} gas reverts with EscrowInvalidSignature (the "
            "wallet refuses the escrow, or needs more gas to answer than the relayer pays; "
            "ESCROW_RELAY_MAX_GAS); the confirmation was not queued",
        )


class WrongSignerError(ForbiddenSignerError):
    """403: the signature recovers to someone other than the escrow's client.

    An EIP-712 signature by the right key over a message that differs in any one field recovers
    to another, unrelated address, so "signed by 0x..." alone does not find the mistake. The
    message names every field of the domain and of the `Confirmation` with the value this
    service checked the signature against (`expected_fields`), so the wallet's request can be
    compared field by field."""

    code = "forbidden_signer"

    def __init__(self, signer: str, client: str, expected_fields: dict[str, str]) -> None:
        self.signer = signer
        self.expected = client
        self.expected_fields = dict(expected_fields)
        shown = ", ".join(f"{name}={value}" for name, value in expected_fields.items())
        QualityEscrowError.__init__(
            self,
            f"the signature recovers to {signer}, not to the escrow's client {client}. Either "
            "another key signed, or the client signed other values: a change in any signed "
            f"field changes the recovered address. Check every signed field against what this "
            f"service expects: {shown}",
        )


def signed_fields(prepared: Prepared, chain_id: int, contract: str) -> dict[str, str]:
    """The EIP-712 domain and `Confirmation` fields of `prepared` as the service checks them,
    in the typed data's order (the review named next to its hash)."""
    c = prepared.confirmation
    review = prepared.review.document
    if review is None:
        what = "no review: the zero hash"
    else:
        attachments = len(review.get("attachments") or [])
        comment = str(review.get("comment") or "")
        what = (
            f"the review of a {len(comment)}-character comment and {attachments} attachment(s)"
        )
        if "criteria" in review:
            what += f" with {len(review['criteria'])} acceptance criteria answered"
    return {
        "name": repr(DOMAIN_NAME),
        "version": repr(DOMAIN_VERSION),
        "chainId": str(chain_id),
        "verifyingContract": str(contract),
        "escrowId": str(c.escrow_id),
        "milestone": str(c.milestone),
        "rating": str(c.rating),
        "commentHash": f"0x{c.comment_hash.hex()} ({what})",
        "deadline": str(c.deadline),
    }


class NotConfirmableError(AlreadyDoneError):
    """409: the milestone cannot take a confirmation any more (settled, disputed, escrow not
    active)."""

    code = "not_confirmable"

    def __init__(self, escrow_id: int, milestone: int, reason: str) -> None:
        self.escrow_id = escrow_id
        self.milestone = milestone
        self.reason = reason
        super().__init__(f"escrow {escrow_id} milestone {milestone} {reason}")


@dataclass(frozen=True)
class ConfirmationInput:
    """What a client asks to confirm (the body of both endpoints, minus the signature)."""

    escrow_id: int
    milestone: int
    rating: int
    comment: str = ""
    attachments: tuple[str, ...] = ()
    deadline: int | None = None
    #: the request's `criteria` as it came in (`reviews.parse_criteria` reads it); None: absent
    criteria: object = None


@dataclass(frozen=True)
class Prepared:
    """A confirmation that may be signed: its message, review, typed data and digest, and what
    the rating pays each side if it settles the milestone now (`payout`)."""

    confirmation: Confirmation
    params: EscrowParams
    review: ReviewDoc
    typed_data: dict[str, Any]
    digest: bytes
    payout: MilestonePayout

    def response(self, token: dict[str, Any]) -> dict[str, Any]:
        """The typed-data endpoint's answer; `token` is the escrow's token as
        `{address, symbol, decimals}` (`TokenInfo.to_json`)."""
        return {
            "typed_data": self.typed_data,
            "review": self.review.document,
            "comment_hash": self.review.comment_hash_hex,
            "digest": "0x" + self.digest.hex(),
            "payout": self.payout.to_json(token),
        }


@dataclass(frozen=True)
class Verified:
    prepared: Prepared
    signature: bytes
    signer: ChecksumAddress
    via: Literal["ecdsa", "erc1271"]


# ------------------------------------------------------------------ values of the body


@dataclass(frozen=True)
class Values:
    """The body's values once checked: attachment digests normalized, criteria parsed."""

    digests: tuple[str, ...]
    criteria: tuple[CriterionAnswer, ...] | None


def check_values(inp: ConfirmationInput) -> Values:
    """The checks that need no I/O."""
    if not 1 <= inp.rating <= 5:
        raise OutOfRangeError("rating", inp.rating, "1..5")
    check_comment(inp.comment)
    digests = check_attachment_list(inp.attachments)
    criteria = parse_criteria(inp.criteria)
    if inp.deadline is not None and not 0 <= inp.deadline <= UINT256_MAX:
        raise OutOfRangeError("deadline", inp.deadline, "unix seconds within uint256")
    return Values(digests, criteria)


def decode_signature(signature: str) -> bytes:
    """0x hex to bytes: 400 `invalid_signature` for anything else or nothing, 413 `too_large` over
    `MAX_SIGNATURE_BYTES`. The length is not judged here: a plain key's signature must be 65
    bytes (`parse_signature`, like the contract's `ECDSA.tryRecover`), a contract wallet's is
    whatever its `isValidSignature` accepts (EIP-1271), as `SignatureChecker` lets it be."""
    text = signature.removeprefix("0x") if isinstance(signature, str) else ""
    if len(text) > 2 * MAX_SIGNATURE_BYTES:
        raise TooLargeError("signature", len(text) // 2, MAX_SIGNATURE_BYTES)
    try:
        raw = bytes.fromhex(text) if isinstance(signature, str) else b""
    except ValueError as exc:
        raise InvalidSignature("not 0x hex") from exc
    if not raw:
        raise InvalidSignature("empty")
    return raw


# ------------------------------------------------------------------ escrow and milestone


def _escrow_params(chain: ChainReader, escrow_id: int, milestone: int) -> EscrowParams:
    parse_escrow_id(escrow_id)
    params = chain.params(escrow_id)
    if not 0 <= milestone < len(params.milestone_amounts):
        raise NotFoundError("milestone", f"{milestone} of escrow {escrow_id}")
    return params


def check_open(
    session: Session,
    chain: ChainReader,
    snapshot: ChainSnapshot,
    params: EscrowParams,
    escrow_id: int,
    milestone: int,
) -> EscrowView:
    """409 when already queued, settled, disputed or the escrow is not active; 410 when the
    delivered milestone's review window has closed. Judged on the contract's state as
    `snapshot` read it (the index may trail the chain, or hold a branch a reorg took away): a
    settled milestone is named so whatever its escrow's status; returns the contract's
    `getEscrow` view."""
    ensure_not_queued(session, chain.chain_id, escrow_id, milestone)
    view = snapshot.escrow()
    if view.status != Status.ACTIVE:
        known = snapshot.milestone_view
        settled = isinstance(known, MilestoneView) and known.state == MilestoneState.SETTLED
        reason = "is already settled" if settled else (
            f"belongs to a {view.status.name.lower()} escrow"
        )
        raise NotConfirmableError(escrow_id, milestone, reason)
    state = snapshot.milestone()
    if state.state == MilestoneState.SETTLED:
        raise NotConfirmableError(escrow_id, milestone, "is already settled")
    if state.state == MilestoneState.DISPUTED:
        raise NotConfirmableError(escrow_id, milestone, "is disputed")
    if state.state == MilestoneState.DELIVERED:
        ends = state.since + params.terms.review_period
        if snapshot.now > ends:
            raise DeadlinePassedError("review window", ends, snapshot.now)
    return view


def check_criteria(
    session: Session,
    params: EscrowParams,
    escrow_id: int,
    criteria: tuple[CriterionAnswer, ...] | None,
) -> None:
    """Given criteria need the escrow's stored terms document (409 `terms_not_stored`) and must
    answer its `acceptance_criteria` one each, in order (422 naming `criteria`)."""
    if criteria is None:
        return
    terms_hash = "0x" + params.terms_hash.hex()
    document = terms_document(session, terms_hash)
    if document is None:
        raise TermsNotStoredError(escrow_id, terms_hash)
    check_criteria_count(criteria, parse_terms(document).acceptance_criteria)


def prepare(session: Session, chain: ChainReader, inp: ConfirmationInput) -> Prepared:
    """Checks everything but the signature and builds the message to sign."""
    values = check_values(inp)
    params = _escrow_params(chain, inp.escrow_id, inp.milestone)
    return _prepare(session, chain, inp, values, params)


def _prepare(
    session: Session,
    chain: ChainReader,
    inp: ConfirmationInput,
    values: Values,
    params: EscrowParams,
) -> Prepared:
    snapshot = chain.snapshot(inp.escrow_id, inp.milestone)  # the node's one round trip
    now = snapshot.now
    deadline = now + DEFAULT_DEADLINE_SECONDS if inp.deadline is None else inp.deadline
    if deadline <= now:
        raise DeadlinePassedError("signature", deadline, now)
    view = check_open(session, chain, snapshot, params, inp.escrow_id, inp.milestone)
    check_criteria(session, params, inp.escrow_id, values.criteria)
    review = build_review(session, inp.comment, values.digests, values.criteria)
    confirmation = Confirmation(
        inp.escrow_id, inp.milestone, inp.rating, review.comment_hash, deadline
    )
    return Prepared(
        confirmation=confirmation,
        params=params,
        review=review,
        typed_data=confirmation.typed_data(chain.chain_id, chain.contract),
        digest=confirmation.digest(chain.chain_id, chain.contract),
        payout=milestone_payout(params, view, inp.milestone, inp.rating),
    )


# ------------------------------------------------------------------ the signature


def check_signer(
    chain: ChainReader, client: ChecksumAddress, prepared: Prepared, signature: bytes
) -> tuple[ChecksumAddress, Literal["ecdsa", "erc1271"]]:
    """Mirrors the contract: a canonical ECDSA signature by the client, else the client's own
    EIP-1271 answer when it is a contract. Raises `WrongSignerError` (403, naming the signed
    fields), `WalletRefusedError` (403), `InvalidSignature` (400) or `NodeUnavailable` (503)."""
    digest = prepared.digest
    malformed: InvalidSignature | None = None
    signer: ChecksumAddress | None = None
    try:
        signer = recover_signer(digest, signature)
    except InvalidSignature as exc:
        malformed = exc
    if signer == client:
        return signer, "ecdsa"
    if chain.has_code(client):
        if chain.erc1271_accepts(client, digest, signature):
            return client, "erc1271"
        raise WalletRefusedError(
            client, signed_fields(prepared, chain.chain_id, chain.contract)
        )
    if malformed is not None:
        raise malformed
    assert signer is not None
    raise WrongSignerError(signer, client, signed_fields(prepared, chain.chain_id, chain.contract))


def precheck_signature(chain: ChainReader, client: ChecksumAddress, signature: bytes) -> None:
    """400 early for a non-canonical signature when the client is a plain account (a contract
    wallet may accept any bytes, so its verdict waits for the ERC-1271 call)."""
    try:
        parse_signature(signature)
    except InvalidSignature:
        if not chain.has_code(client):
            raise


def verify(
    session: Session, chain: ChainReader, inp: ConfirmationInput, signature: str
) -> Verified:
    """All checks of a signed confirmation, nothing written."""
    values = check_values(inp)
    if inp.deadline is None:
        raise MalformedInputError("body", "deadline is required with a signature")
    raw = decode_signature(signature)
    params = _escrow_params(chain, inp.escrow_id, inp.milestone)
    precheck_signature(chain, params.client, raw)
    prepared = _prepare(session, chain, inp, values, params)
    signer, via = check_signer(chain, params.client, prepared, raw)
    if via == "erc1271":
        check_relay(chain, prepared, raw)
    return Verified(prepared, raw, signer, via)


def check_relay(chain: ChainReader, prepared: Prepared, signature: bytes) -> int:
    """The gas the relayer's `confirmWithSig` needs, simulated from the relayer's address within
    `ESCROW_RELAY_MAX_GAS` (`ChainReader.relay_gas`). Raises `WalletRelayRefusedError` (403)
    when it reverts with `EscrowInvalidSignature`, `GasOverCap` (422 `gas_over_cap`) when it
    needs more gas than the cap, any other decoded revert as it is (the API's revert map), and
    `NodeUnavailable` (503)."""
    try:
        return chain.relay_gas(prepared.params, prepared.confirmation, signature)
    except EscrowInvalidSignature as exc:
        raise WalletRelayRefusedError(
            prepared.params.client, chain.relayer(), PROBE_FACTOR * chain.relay_max_gas
        ) from exc
