"""What every route answers, as pydantic models: the `response_model` of each JSON route, so the
OpenAPI document (`/openapi.json`, `/docs`) describes every answer, and `refusals(...)`, the
error answers of a route (each a `RefusalBody`).

The models describe the dicts the domain functions already build (`backend.escrows`,
`backend.oracle`, `backend.confirmations`, `backend.notify`, `backend.audit`); a route hands that
dict to FastAPI, which checks it against the model and writes it out unchanged. Field order is
the builders' key order. Every model is strict and closed (`extra="forbid"`): a key or a type
the model does not declare fails the request in tests instead of drifting away from the
document, and no value is converted on the way out (a decimal string is never read as a number,
nor a number as a string). Only `float` would turn an integer into `1.0`: its builders give
floats (KPI aggregates and thresholds are floats by construction).

A route that sends bytes it already holds (the escrow detail, from its cache) declares its model
for the document only; tests/api/test_openapi.py checks real bodies against it.

Conventions (docs/interface.md section 4.1): addresses EIP-55; hashes 0x hex, 32 bytes; uint256
values (amounts, `total`, `reserve`, ...) decimal strings; times unix seconds (chain time);
block numbers, ids and counts JSON integers; KPI values and thresholds JSON numbers in the
KPI's own unit.

Documents whose shape is defined elsewhere and that are served as stored stay open objects: the
terms document (section 3.2), the evidence bundle (section 3.3), an audit check's `evidence`
(its keys depend on the check) and the terms JSON Schema itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from backend.api.errors import RefusalBody
from backend.oracle.evaluation import Verdict
from backend.oracle.terms import Aggregate, MissingData, Operator

# ------------------------------------------------------------------ value kinds

Address = Annotated[
    str,
    Field(
        pattern=r"^0x[0-9a-fA-F]{40}$",
        description="An address, EIP-55 checksummed",
        examples=["0x5FbDB2315678afecb367f032d93F642f64180aa3"],
    ),
]
Hash32 = Annotated[
    str,
    Field(
        pattern=r"^0x[0-9a-fA-F]{64}$",
        description="32 bytes as lower-case 0x hex (a keccak256, a transaction hash)",
        examples=["0x" + "ab" * 32],
    ),
]
Uint256 = Annotated[
    str,
    Field(
        pattern=r"^(0|[1-9][0-9]*)$",
        description="A uint256 as a decimal string (base units for amounts)",
        examples=["1000000000000000000"],
    ),
]
HexData = Annotated[
    str, Field(pattern=r"^0x([0-9a-fA-F]{2})*$", description="Calldata as 0x hex")
]
HexQuantity = Annotated[
    str,
    Field(
        pattern=r"^0x[0-9a-f]+$",
        description="Wei to send, as a 0x hex quantity (`0x0` for none), as "
        "`eth_sendTransaction` takes it",
        examples=["0x0"],
    ),
]
Sha256 = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256 of the file, 64 lower-case hex digits"
    ),
]
UnixTime = Annotated[int, Field(description="Unix seconds")]

#: `Status` of the contract (`backend.chain.types.Status`), lower-case; never `none`
EscrowStatus = Literal["proposed", "active", "closed"]
#: `MilestoneState`, lower-case; `none` before a delivery
MilestoneStateName = Literal["none", "delivered", "disputed", "settled"]
#: `how` of `MilestoneSettled` (`SettledHow`), lower-case
SettledHowName = Literal[
    "confirmed", "signed", "timeout", "dispute_resolved", "stale_dispute", "reclaimed"
]
#: a party's role in an escrow (`backend.escrows.listing.ROLES`)
PartyRole = Literal["client", "provider", "arbiter", "oracle"]
#: where a transaction stands (`backend.escrows.transactions.TX_STATUSES`)
TxStatus = Literal["pending", "mined", "reverted"]
#: `BreachState`, lower-case; never `none`
BreachStateName = Literal[
    "reported", "challenged", "finalized", "upheld", "rejected", "stale_split"
]
#: `BreachKind` 1, 2, 3, lower-case
BreachKindName = Literal["kpi_below_standard", "consecutive_underperformance", "major_incident"]
#: `outcome` of `BreachSettled` (`BreachOutcome`), lower-case
BreachOutcomeName = Literal["finalized", "upheld", "rejected", "stale_split"]
#: a confirmation request's progress (`backend.confirmations.outbox.STATUSES`)
ConfirmationStatus = Literal["pending", "signed", "sent", "mined", "settled", "failed"]
#: a breach submission's progress (`backend.oracle.outbox.STATUSES`)
SubmissionStatus = Literal[
    "pending", "signed", "sent", "mined", "failed", "not_sent", "off_chain"
]
#: the events a webhook subscription may take (`backend.notify.webhooks.EVENT_TYPES`)
WebhookEvent = Literal[
    "delivery_submitted",
    "review_deadline_near",
    "breach_reported",
    "milestone_settled",
    "credit_available",
]


class Answer(BaseModel):
    """A JSON object the API answers: exactly these keys, values of exactly these types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ------------------------------------------------------------------ errors


#: the meaning of each error status, as the routes' `responses` describe it
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed: a body, value or signature that cannot be parsed (`malformed`, "
    "`invalid_signature`), a body nested deeper than 64 levels",
    401: "Refused credentials: a missing, unknown or revoked bearer token (`token_refused`), a "
    "sign-in message that does not prove the address",
    403: "Forbidden signer: a signature by someone other than the required party",
    404: "Not found: an unknown escrow, milestone, breach, action, document, attachment or request",
    409: "Conflict: already done, or not in the right state",
    410: "Gone: a signature deadline or a review window has passed",
    413: "Too large: a body, comment, attachment or batch over its limit (any request body: 2 "
    "MiB, measurements 4 MiB, an upload 10 MiB plus 64 KiB)",
    422: "Out of range: a value that parses but is refused, naming the field",
    503: "Unavailable: the node (or database) does not answer; `Retry-After` in seconds",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its meaning and a `RefusalBody`, and `default`
    for any other refusal (every error of the API has that body: docs/interface.md 4.2)."""
    out: dict[int | str, dict[str, Any]] = {
        status: {"model": RefusalBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }
    out["default"] = {
        "model": RefusalBody,
        "description": "Any other refusal (docs/interface.md section 4.2)",
    }
    return out


def declare_body_refusals(spec: dict[str, Any]) -> dict[str, Any]:
    """Adds to the OpenAPI document `spec` (in place; returned) the refusals
    `backend.api.body_bounds.BodyBounds` may answer to any operation that takes a body, where
    the route does not declare them itself: 400 (nested too deep) and 413 (too large), each a
    `RefusalBody`. Running it again changes nothing."""
    ref = {"$ref": "#/components/schemas/RefusalBody"}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                for status in (400, 413):
                    operation["responses"].setdefault(str(status), {
                        "description": ERROR_DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": dict(ref)}},
                    })
    return spec


def raw_body(
    media_types: str | tuple[str, ...], description: str, schema: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry of a route whose 200 body is not JSON built by the route (CSV, PDF,
    stored bytes): its media type (or each it may have) and what the bytes are."""
    types = (media_types,) if isinstance(media_types, str) else media_types
    body = {"schema": schema or {"type": "string", "format": "binary"}}
    return {200: {"description": description, "content": {t: body for t in types}}}


# ------------------------------------------------------------------ health


class WorkerHealth(Answer):
    """One background worker of the serving process (`backend.services.WorkerStatus`)."""

    name: Literal["indexer", "relayer", "oracle", "webhooks"]
    state: Literal["running", "restarting", "off", "stopped"] = Field(
        description="`running` (active, or standing by for its lease), `restarting` (stopped "
        "with an error, started again at `next_attempt_at`), `off` (no key configured for it), "
        "`stopped` (the process is shutting down)"
    )
    error: str | None = Field(
        description="Why it is not running, or the last error it was restarted after"
    )
    restarts: int = Field(description="Times started again after an error since start-up")
    next_attempt_at: float | None = Field(
        description="Unix seconds of the next start while `restarting`, else null"
    )


class Health(Answer):
    """`GET /api/health` (`backend.api.health.Health`)."""

    status: Literal["ok", "degraded"]
    reason: str | None = Field(description="Every reason for `degraded`, `; `-separated")
    chain_id: int
    contract: Address
    head_block: int | None = Field(description="The node's latest block; null when unreachable")
    indexed_block: int | None = Field(description="The indexer's cursor; null before its first run")
    lag_blocks: int | None = Field(
        description="Confirmed head (head minus ESCROW_CONFIRMATIONS) minus the indexed block"
    )
    workers: list[WorkerHealth] = Field(
        default_factory=list,
        description="The serving process's background workers (empty when it runs none, "
        "`escrow serve --no-workers`)",
    )


# ------------------------------------------------------------------ terms


class TermsStored(Answer):
    """`POST /api/terms`: the keccak256 of the document's canonical form."""

    terms_hash: Hash32


class TermsJsonSchema(RootModel[dict[str, Any]]):
    """The JSON Schema (draft 2020-12) of a terms document (docs/interface.md section 3.2)."""


# ------------------------------------------------------------------ escrows


class Token(Answer):
    """The escrow's token as a person reads amounts; the zero address is ETH."""

    address: Address
    symbol: str | None = Field(description="null when the token has none")
    decimals: int | None = Field(description="null when the token has none")


class EscrowSummary(Answer):
    """One row of `GET /api/escrows` (`backend.escrows.listing.escrow_summary`)."""

    id: int
    status: EscrowStatus
    client: Address
    provider: Address
    oracle: Address
    arbiter: Address = Field(description="The zero address when there is none")
    token: Token
    terms_hash: Hash32
    milestone_count: int
    total: Uint256
    locked: Uint256
    reserved: Uint256
    refunded: Uint256
    created_block: int
    created_tx: Hash32
    created_at: UnixTime
    accepted_at: UnixTime | None
    updated_block: int
    roles: list[PartyRole] | None = Field(
        description="With the `party` filter: the roles that address holds in the escrow, in "
        "the order client, provider, arbiter, oracle; null without it"
    )


class EscrowPage(Answer):
    """`GET /api/escrows`: one page, newest first (`backend.escrows.listing.list_escrows`)."""

    escrows: list[EscrowSummary]
    total: int = Field(description="Escrows matching the filter, on every page")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The next page's `offset`; null at the end")


class EscrowTerms(Answer):
    """The contract's `Terms` (`backend.chain.types.Terms.to_json`): bps and seconds as JSON
    integers, `deliveryDeadline` in unix seconds."""

    ratingPayoutBps: list[int] = Field(description="Payout in bps for ratings 1..5")
    breachRefundBps: int
    streakRefundBps: int
    incidentRefundBps: int
    maxRefundBps: int
    reviewPeriod: int
    challengePeriod: int
    arbitrationPeriod: int
    deliveryDeadline: int


class EscrowParams(Answer):
    """The contract's `EscrowParams` (`backend.chain.types.EscrowParams.to_json`)."""

    client: Address
    provider: Address
    token: Address
    oracle: Address
    arbiter: Address
    termsHash: Hash32
    milestoneAmounts: list[Uint256]
    terms: EscrowTerms


class WalletTx(Answer):
    """A ready transaction for `eth_sendTransaction`, from the party's own wallet."""

    to: Address
    data: HexData
    value: HexQuantity


class PreparedEscrow(Answer):
    """`POST /api/escrows/prepare` (`backend.escrows.prepare.prepare_escrow`)."""

    params: EscrowParams
    terms_hash: Hash32
    total: Uint256
    tx: WalletTx = Field(description="`createEscrow`, sent by the client")
    approve: WalletTx | None = Field(
        description="The ERC-20 allowance the client grants first; null for ETH"
    )


class Attachment(Answer):
    """An uploaded file (`backend.confirmations.reviews.attachment_json`)."""

    sha256: Sha256
    name: str = Field(description="The cleaned file name, at most 255 characters")
    media_type: str = Field(description="As detected from the bytes")
    size: int = Field(description="Bytes")


class CriterionVerdict(Answer):
    """The client's answer to one acceptance criterion of the terms (docs/interface.md 3.4)."""

    index: int = Field(description="The criterion's position in the terms' acceptance_criteria")
    met: bool
    note: str | None = Field(
        None, description="At most 500 characters; absent (not null) when none was given"
    )


class ReviewDocument(Answer):
    """The review bound on-chain as `commentHash` (docs/interface.md section 3.4)."""

    comment: str
    attachments: list[Attachment]
    criteria: list[CriterionVerdict] | None = Field(
        None,
        description="One answer per acceptance criterion of the terms, in their order; absent "
        "(not null) from a review that gives none, which hashes as it did before criteria",
    )


class DeliveryDocument(Answer):
    """The provider's delivery document bound on-chain as `deliveryHash` (docs/interface.md
    section 4.3, `POST .../delivery`)."""

    note: str
    attachments: list[Attachment]


class PreparedDelivery(Answer):
    """`POST /api/escrows/{id}/milestones/{m}/delivery` (`backend.escrows.milestone_documents`)."""

    delivery_hash: Hash32 = Field(description="keccak256 of the document's canonical form")
    document: DeliveryDocument
    tx: WalletTx = Field(description="`submitDelivery` with that `deliveryHash`, sent by the "
                         "provider")


class DisputeReasonDocument(Answer):
    """The client's dispute reason bound on-chain as `reasonHash` (docs/interface.md section
    4.3, `POST .../dispute`)."""

    reason: str
    attachments: list[Attachment]


class PreparedDispute(Answer):
    """`POST /api/escrows/{id}/milestones/{m}/dispute` (`backend.escrows.milestone_documents`)."""

    reason_hash: Hash32 = Field(description="keccak256 of the document's canonical form")
    document: DisputeReasonDocument
    tx: WalletTx = Field(description="`openDispute` with that `reasonHash`, sent by the client")


class Balances(Answer):
    """The escrow's money, base units of its token, folded from its events."""

    total: Uint256
    locked: Uint256
    nominal: Uint256
    reserved: Uint256
    refunded: Uint256
    credited_provider: Uint256
    credited_client: Uint256


class MilestoneDetail(Answer):
    """One milestone of the escrow detail (`backend.escrows.detail.milestone_json`)."""

    index: int
    amount: Uint256
    state: MilestoneStateName
    delivered_at: UnixTime | None
    delivery_hash: Hash32 | None
    delivery: DeliveryDocument | None = Field(
        description="The stored delivery document behind `delivery_hash`; null when none is "
        "stored (a hash sent without `POST .../delivery`, or none)"
    )
    disputed_at: UnixTime | None
    dispute_reason_hash: Hash32 | None
    dispute_reason: DisputeReasonDocument | None = Field(
        description="The stored dispute reason behind `dispute_reason_hash`; null when none is "
        "stored (a hash sent without `POST .../dispute`, or none)"
    )
    settled_at: UnixTime | None
    settled_tx: Hash32 | None
    how: SettledHowName | None
    rating: int | None = Field(description="1..5 when the client rated")
    comment_hash: Hash32 | None
    review: ReviewDocument | None = Field(
        description="The stored review behind `comment_hash`; null when none is stored"
    )
    to_provider: Uint256
    to_client: Uint256


class BreachDetail(Answer):
    """One breach report of the escrow detail (`backend.escrows.detail.breach_json`)."""

    id: int
    kind: int = Field(
        description="1 KPI below standard, 2 consecutive underperformance, 3 incident"
    )
    kind_name: BreachKindName | None
    period: int
    evidence_hash: Hash32
    reserve: Uint256
    state: BreachStateName
    reported_at: UnixTime
    reported_tx: Hash32
    challenged_at: UnixTime | None
    settled_at: UnixTime | None
    outcome: BreachOutcomeName | None
    to_client: Uint256
    to_provider: Uint256


class EscrowDetail(Answer):
    """`GET /api/escrows/{id}` (`backend.escrows.detail.escrow_detail`)."""

    id: int
    chain_id: int
    contract: Address
    status: EscrowStatus
    params: EscrowParams
    token: Token
    balances: Balances
    milestones: list[MilestoneDetail]
    breaches: list[BreachDetail]
    terms_document: dict[str, Any] | None = Field(
        description="The stored terms document (docs/interface.md section 3.2); null when not "
        "stored"
    )
    created_block: int
    created_tx: Hash32
    created_at: UnixTime
    accepted_at: UnixTime | None
    updated_block: int


# ------------------------------------------------------------------ service configuration


class NativeCurrency(Answer):
    """The chain's own currency (the escrow token `0x0...0`)."""

    symbol: str
    decimals: int


class ServiceLimits(Answer):
    """What the service refuses beyond (docs/interface.md sections 1.2, 3.2, 3.4, 4.3)."""

    max_comment_chars: int = Field(description="A review's comment, characters")
    max_criterion_note_chars: int = Field(description="One criterion's note, characters")
    max_delivery_note_chars: int = Field(description="A delivery document's note, characters")
    max_dispute_reason_chars: int = Field(description="A dispute reason's text, characters")
    max_attachments: int = Field(
        description="Attachments of one review, delivery or dispute reason"
    )
    max_attachment_bytes: int = Field(description="One uploaded file, bytes")
    attachment_media_types: list[str] = Field(description="As detected from the bytes")
    max_milestones: int
    max_terms_bytes: int = Field(description="A terms document, bytes")
    default_deadline_seconds: int = Field(
        description="How far ahead a typed-data request without `deadline` sets it"
    )


class ServiceConfig(Answer):
    """`GET /api/config` (`backend.escrows.wallet_config.service_config`): what a wallet page
    needs to talk to this service's chain and contract. No key is ever shown."""

    chain_id: int
    rpc_url: str = Field(description="The JSON-RPC URL a wallet should add for the chain")
    contract: Address
    deployment_block: int = Field(description="The block the contract was deployed in")
    oracle: Address | None = Field(
        description="The service's KPI oracle account; null when it has no oracle key"
    )
    relayer: Address | None = Field(
        description="The account relaying signed confirmations; null when it has no key"
    )
    arbiter: Address | None = Field(
        description="The arbiter offered for new escrows (ESCROW_DEFAULT_ARBITER); null: none"
    )
    native: NativeCurrency
    limits: ServiceLimits


# ------------------------------------------------------------------ transactions


class TxEvent(Answer):
    """One log of the escrow contract in a transaction's receipt, decoded."""

    event: str = Field(description="The event's name (docs/interface.md section 1.5)")
    escrow_id: int | None = Field(description="Its `escrowId`; null for `Withdrawn`")
    args: dict[str, Any] = Field(
        description="Every argument by name, as the index stores it: integers as decimal "
        "strings, bytes as 0x hex, addresses EIP-55, `params` as in `EscrowParams`"
    )


class TransactionReport(Answer):
    """`GET /api/tx/{tx_hash}` (`backend.escrows.transactions.transaction_report`)."""

    tx_hash: Hash32
    status: TxStatus
    block_number: int | None = Field(description="null while pending")
    from_: Address = Field(alias="from")
    to: Address | None = Field(description="null for a contract creation")
    escrow_ids: list[int] = Field(
        description="The escrows the contract's events of the transaction name, in log order"
    )
    events: list[TxEvent] = Field(description="Only the escrow contract's logs, in log order")
    error: str | None = Field(
        description="A reverted transaction's custom error in words, when replaying it finds "
        "one (`EscrowUnauthorizedCaller(caller=0x.., required=0x..)`); else null"
    )


# ------------------------------------------------------------------ accounts


class Credit(Answer):
    """What the account can withdraw in one token, read from the contract's `credits`."""

    token: Address
    symbol: str | None
    decimals: int | None
    amount: Uint256


class AccountCredits(Answer):
    """`GET /api/accounts/{address}/credits` (`backend.escrows.credits.account_credits`)."""

    account: Address
    credits: list[Credit]


# ------------------------------------------------------------------ confirmations


class TypedDataField(Answer):
    """One member of an EIP-712 struct type: its name and Solidity type."""

    name: str
    type: str


class TypedDataTypes(Answer):
    """The struct types of the typed data (docs/interface.md section 2)."""

    EIP712Domain: list[TypedDataField]
    Confirmation: list[TypedDataField]


class TypedDataDomain(Answer):
    """The EIP-712 domain: `QualityEscrow`, version `1`, the chain and the contract."""

    name: str
    version: str
    chainId: int
    verifyingContract: Address


class ConfirmationMessage(Answer):
    """The signed `Confirmation`: uint256 values as decimal strings, `rating` a number."""

    escrowId: Uint256
    milestone: Uint256
    rating: int
    commentHash: Hash32
    deadline: Uint256


class ConfirmationTypedData(Answer):
    """EIP-712 typed data for `eth_signTypedData_v4` (docs/interface.md section 2)."""

    types: TypedDataTypes
    primaryType: Literal["Confirmation"]
    domain: TypedDataDomain
    message: ConfirmationMessage


class PayoutPreview(Answer):
    """What the rating credits each side if the confirmation settles the milestone now
    (`backend.escrows.payouts.milestone_payout`; docs/interface.md section 1.4)."""

    to_provider: Uint256 = Field(description="Base units of `token` (wei for ETH)")
    to_client: Uint256 = Field(description="Base units of `token`: the rest of the share")
    token: Token


class PreparedConfirmation(Answer):
    """`POST .../typed-data` (`backend.confirmations.verify.Prepared.response`)."""

    typed_data: ConfirmationTypedData
    review: ReviewDocument | None = Field(
        description="null: no comment, no attachments and no criteria"
    )
    comment_hash: Hash32 = Field(description="keccak256 of the review's canonical form, or zero")
    digest: Hash32 = Field(description="The EIP-712 digest the client signs")
    payout: PayoutPreview = Field(
        description="At the contract's current locked and nominal amounts: a breach reserve "
        "taken before the confirmation lands lowers it"
    )


class ConfirmationQueued(Answer):
    """`POST .../confirmations` (202): the relay request (`request_json`)."""

    id: int
    status: ConfirmationStatus
    tx_hash: Hash32 | None = Field(description="null until a transaction is signed")


class TransactionVersion(Answer):
    """One transaction signed for an outbox row (`backend.outbox.versions.version_json`): the
    original, a replacement with higher fees, or a nonce filler."""

    tx_hash: Hash32
    nonce: int
    purpose: str = Field(description="What it does for the row: confirm, report, finalize, fill")
    status: str = Field(
        description="signed, sent, mined, reverted, replaced, superseded, reorged or refused"
    )
    max_fee_per_gas: Uint256 | None = Field(description="Wei (the gas price of a legacy tx)")
    max_priority_fee_per_gas: Uint256 | None = Field(description="Wei; null for a legacy tx")
    block_number: int | None = Field(description="The block of its receipt, while it has one")
    block_hash: Hash32 | None
    error: str | None
    created_at: UnixTime


class ConfirmationProgress(ConfirmationQueued):
    """`GET /api/confirmations/{request_id}` (`request_json(full=True)`)."""

    chain_id: int
    escrow_id: int
    milestone: int
    rating: int
    comment_hash: Hash32
    deadline: UnixTime = Field(description="The signed deadline, a JSON integer")
    signer: Address
    nonce: int | None = Field(description="The relayer's transaction nonce, once signed")
    error: str | None = Field(description="Why it failed")
    created_at: UnixTime
    updated_at: UnixTime
    transactions: list[TransactionVersion] = Field(
        description="Every version of its transaction, oldest first"
    )


# ------------------------------------------------------------------ measurements and analytics


class MeasurementsStored(Answer):
    """`POST /api/escrows/{id}/measurements`: samples stored, and samples already stored with the
    same value."""

    accepted: int
    duplicates: int


class KpiValue(Answer):
    """One KPI in one period (`backend.oracle.evaluation.KpiResult`)."""

    id: str
    aggregate: Aggregate
    op: Operator
    threshold: float
    value: float | None = Field(
        description="The aggregate of the period's samples; null: none, or fewer than "
        "`min_samples`"
    )
    verdict: Verdict
    samples: int = Field(description="How many samples the period has")
    min_samples: int = Field(description="The fewest samples the value is judged on")


class KpiPeriod(Answer):
    """One evaluation period `[start, end)` with its verdict and each KPI's value."""

    period: int
    start: UnixTime
    end: UnixTime
    closed: bool = Field(description="Past `end + grace_seconds`")
    verdict: Verdict
    kpis: list[KpiValue]


class IncidentRuleFields(Answer):
    """The terms' incident rule: its comparison (no unknown keys, no `min_samples`)."""

    aggregate: Aggregate
    op: Operator
    threshold: float
    kpi: str


class IncidentPeriod(Answer):
    """The incident rule in one period with samples of its KPI."""

    period: int
    value: float | None = Field(
        description="The rule's aggregate of the period's samples so far; null with fewer "
        "than `min_samples`"
    )
    samples: int
    met: bool


class IncidentState(Answer):
    """The terms' incident rule and where it stands, period by period."""

    rule: IncidentRuleFields
    min_samples: int = Field(description="The fewest samples the rule is judged on")
    met: bool = Field(description="Met in some period")
    periods: list[IncidentPeriod] = Field(description="Each period with samples of the rule's KPI")


class KpiBelowStandardRule(Answer):
    """Kind 1: a failing closed period."""

    kind: Literal[1]
    name: Literal["kpi_below_standard"]
    kpis: list[str] = Field(description="The KPIs not passing")
    missing_data: MissingData


class ConsecutiveUnderperformanceRule(Answer):
    """Kind 2: N failing closed periods in a row."""

    kind: Literal[2]
    name: Literal["consecutive_underperformance"]
    consecutive_periods: int
    periods: list[int] = Field(description="The streak's periods")
    missing_data: MissingData


class IncidentBreachRule(Answer):
    """Kind 3: the incident rule met."""

    kind: Literal[3]
    name: Literal["incident"]
    aggregate: Aggregate
    op: Operator
    threshold: float
    kpi: str


#: the `rule` of a finding and of its evidence bundle (docs/interface.md section 3.3)
BreachRule = Annotated[
    KpiBelowStandardRule | ConsecutiveUnderperformanceRule | IncidentBreachRule,
    Field(discriminator="name"),
]


class KpiFinding(Answer):
    """A breach the evaluation finds: `reportBreach(kind, period)` with this `rule`."""

    kind: int
    period: int
    period_start: UnixTime
    period_end: UnixTime
    rule: BreachRule
    reported_on_chain: bool


class EscrowKpis(Answer):
    """`GET /api/escrows/{id}/kpis` (`backend.oracle.scorecard.escrow_kpis`)."""

    escrow_id: int
    status: EscrowStatus
    terms_hash: Hash32
    accepted_at: UnixTime | None
    now: UnixTime = Field(description="The time the periods were evaluated at")
    period_seconds: int
    grace_seconds: int
    missing_data: MissingData
    consecutive_periods: int | None
    sample_count: int
    evaluation_error: str | None = Field(
        description="Why the samples cannot be evaluated, or why the terms are not (a "
        "`period_seconds` below ESCROW_MIN_PERIOD_SECONDS): then no periods and no findings; "
        "null when they can"
    )
    total_periods: int = Field(description="Periods started by `now` (0..total_periods-1)")
    from_period: int = Field(description="The first period of this page")
    limit: int = Field(description="The most periods a page holds (1 to 500, default 100)")
    next_from_period: int | None = Field(
        description="`from_period` of the next page; null: this page reaches the last period"
    )
    previous_from_period: int | None = Field(
        description="`from_period` of the previous page; null: this page starts at period 0"
    )
    streak_from_period: int | None = Field(
        description="The period this page counts streaks (kind 2) from: the start of the "
        "failing run before the page, looked for at most 5,000 periods back; null without a "
        "streak rule"
    )
    periods: list[KpiPeriod] = Field(description="The page's periods, ascending")
    incident: IncidentState | None = Field(
        description="null: the terms have no incident rule; its periods are the page's"
    )
    findings: list[KpiFinding] = Field(description="The findings of the page's periods")


class BreachSubmissionState(Answer):
    """The oracle's outbox row of a finding."""

    status: SubmissionStatus
    tx_hash: Hash32 | None
    follow_up: str = Field(
        description="After the report: none, finalize_signed, finalize_sent, done, "
        "challenged, ..."
    )
    error: str | None
    updated_at: UnixTime


class BreachReport(Answer):
    """One breach of `GET /api/escrows/{id}/breaches` (`backend.oracle.breaches`)."""

    kind: int
    period: int
    on_chain: bool
    breach_id: int | None
    state: BreachStateName | None
    reserved: Uint256
    refunded: Uint256
    reported_at: UnixTime | None
    reported_tx: Hash32 | None
    challenged_at: UnixTime | None
    settled_at: UnixTime | None
    evidence_hash: Hash32 | None
    evidence: dict[str, Any] | None = Field(
        description="The stored evidence bundle (docs/interface.md section 3.3), as stored"
    )
    submission: BreachSubmissionState | None
    note: str | None = Field(description="Why nothing was reserved or nothing was sent")


class EvaluationFailure(Answer):
    """The oracle's last failure to evaluate an escrow (`backend.oracle.findings`)."""

    error: str
    first_failed_at: UnixTime
    last_failed_at: UnixTime
    attempts: int = Field(description="Failed passes in a row")


class EscrowBreaches(Answer):
    """`GET /api/escrows/{id}/breaches` (`backend.oracle.breaches.escrow_breaches`)."""

    escrow_id: int
    from_period: int = Field(description="The first period of this page")
    limit: int = Field(description="The most periods a page covers (1 to 200, default 50)")
    next_from_period: int | None = Field(
        description="`from_period` of the next page (the next period with a breach); null: "
        "none after this page"
    )
    breaches: list[BreachReport] = Field(
        description="Of periods from_period to from_period + limit - 1, ordered by (period, kind)"
    )
    evaluation_error: EvaluationFailure | None = Field(
        description="When the oracle's latest attempt to evaluate the escrow failed; else null"
    )


class EscrowsByStatus(Answer):
    """How many of the provider's escrows are in each status."""

    proposed: int
    active: int
    closed: int


class ScorecardEscrows(Answer):
    """The provider's escrows: how many, by status, and their ids (ascending)."""

    total: int
    by_status: EscrowsByStatus
    ids: list[int]


class Ratings(Answer):
    """Client ratings of milestones the client settled (confirmed or signed)."""

    count: int
    histogram: dict[Literal["1", "2", "3", "4", "5"], int] = Field(
        description="Ratings 1..5 and how often each was given"
    )


class Deliveries(Answer):
    """Milestones delivered, and how they were settled (see `provider_scorecard`)."""

    delivered: int
    confirmed_within_review: int
    confirmed_after_review: int
    released_by_timeout: int
    disputed: int


class BreachesByState(Answer):
    """Breach reports in each state."""

    reported: int
    challenged: int
    finalized: int
    upheld: int
    rejected: int
    stale_split: int


class BreachCounts(Answer):
    """Breach reports: how many, by kind (`"1"`, `"2"`, `"3"`) and by state."""

    total: int
    by_kind: dict[Literal["1", "2", "3"], int]
    by_state: BreachesByState


class TokenRefunds(Answer):
    """Breach refunds of one token against the escrows' value in it."""

    token: Address
    symbol: str | None
    decimals: int | None
    refunded: Uint256
    value: Uint256
    share: str = Field(
        pattern=r"^[0-9]+\.[0-9]{6}$", description="refunded / value, 6 digits (half-even)"
    )


class KpiSeriesPoint(Answer):
    """One KPI of one escrow in one period, as `KpiValue` reads it."""

    escrow_id: int
    kpi: str
    period: int
    period_start: UnixTime
    period_end: UnixTime
    closed: bool
    value: float | None
    aggregate: Aggregate
    op: Operator
    threshold: float
    verdict: Verdict


class SeriesSkipped(Answer):
    """Escrows without a series, by reason."""

    not_accepted: int
    no_terms: int
    unreadable_terms: int
    no_samples: int
    evaluation_failed: int = Field(description="Samples that cannot be evaluated")
    period_too_short: int = Field(
        description="Terms whose period is below ESCROW_MIN_PERIOD_SECONDS: not evaluated"
    )
    beyond_limit: int = Field(
        description="Accepted escrows past the 50 with the highest ids, which have no series"
    )


class ProviderScorecard(Answer):
    """`GET /api/providers/{address}/scorecard` (`backend.oracle.scorecard.provider_scorecard`;
    its docstring defines each number)."""

    provider: Address
    now: UnixTime
    escrows: ScorecardEscrows
    average_rating: float | None = Field(description="Rounded to 6 digits; null: no rating")
    ratings: Ratings
    deliveries: Deliveries
    breaches: BreachCounts
    refunds: list[TokenRefunds]
    series: list[KpiSeriesPoint] = Field(
        description="The latest 30 periods of each of the provider's 50 latest accepted "
        "escrows; an escrow's whole series is `GET /api/escrows/{id}/kpis`, page by page"
    )
    series_skipped: SeriesSkipped


# ------------------------------------------------------------------ audit


class AuditCheck(Answer):
    """A named check (`backend.audit.model.Check`)."""

    name: str = Field(description="bytecode, replay, signatures, payouts, documents, index, ...")
    ok: bool | None = Field(description="null: not checked, `detail` says why")
    detail: str
    evidence: list[dict[str, Any]] = Field(description="What failed; keys depend on the check")


class TimelinePoint(Answer):
    """The escrow's money after one event, base units."""

    block: int
    time: UnixTime
    event: str
    locked: Uint256
    reserved: Uint256
    released: Uint256
    refunded: Uint256


class EscrowAuditReport(Answer):
    """`GET /api/escrows/{id}/audit`: the named checks of one escrow
    (`backend.audit.model.EscrowAudit.to_json`)."""

    escrow_id: int
    chain_id: int
    contract: Address
    block: int = Field(description="The block the contract's views were compared at")
    token: Address
    symbol: str
    decimals: int
    checks: list[AuditCheck]
    timeline: list[TimelinePoint]
    events: int
    consistent: bool


# ------------------------------------------------------------------ sign-in and webhooks


class SignInNonce(Answer):
    """`GET /api/auth/nonce`: what a Sign-In with Ethereum message must name."""

    nonce: str
    expires_at: UnixTime
    domain: str
    uri: str
    chain_id: int


class Subscription(Answer):
    """A webhook subscription (`backend.notify.webhooks.subscription_json`)."""

    id: int
    address: Address
    url: str = Field(description="The URL's origin only, except in the answer to its creation")
    events: list[WebhookEvent]
    active: bool
    created_at: UnixTime


class NewSubscription(Subscription):
    """`POST /api/webhooks` (201): the full URL and the secret, shown only this once."""

    secret: str = Field(description="Signs every delivery (HMAC-SHA256 of the body)")


class SubscriptionList(Answer):
    """`GET /api/webhooks?address=`: active subscriptions, without secrets."""

    address: Address
    subscriptions: list[Subscription]
