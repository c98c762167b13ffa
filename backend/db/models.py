"""All tables, a section per domain; this module is the Alembic registry (`migrations/env.py`).

Amounts are uint256 values stored as decimal strings (never a float); addresses are EIP-55
checksummed; hashes lower-case 0x hex; times unix seconds."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ADDRESS = String(42)
HASH = String(66)
AMOUNT = String(78)


#: 64-bit integers; SQLite needs plain INTEGER for its auto-increment primary keys
BIGINT = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        int: BIGINT,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


# ------------------------------------------------------------------ chain index


class ChainCursor(Base):
    """How far the indexer has ingested, per (chain, contract)."""

    __tablename__ = "chain_cursor"

    chain_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    contract: Mapped[str] = mapped_column(ADDRESS, primary_key=True)
    deployment_block: Mapped[int]
    block_number: Mapped[int]
    block_hash: Mapped[str] = mapped_column(HASH)
    #: set when the chain no longer matches what was indexed (reset dev chain, code gone)
    reset_detected: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[int]


class IndexedBlock(Base):
    """Hash of every block the indexer stored logs from (and of each cursor block), used to find
    the common ancestor after a reorg."""

    __tablename__ = "indexed_block"

    chain_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(HASH)


class EventLog(Base):
    """One contract event, stored once by (tx hash, log index)."""

    __tablename__ = "event_log"
    __table_args__ = (
        UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_event_log_tx_log"),
        Index("ix_event_log_escrow", "chain_id", "escrow_id", "block_number", "log_index"),
        Index("ix_event_log_block", "chain_id", "block_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int]
    contract: Mapped[str] = mapped_column(ADDRESS)
    block_number: Mapped[int]
    block_hash: Mapped[str] = mapped_column(HASH)
    block_time: Mapped[int]
    tx_hash: Mapped[str] = mapped_column(HASH)
    tx_index: Mapped[int] = mapped_column(Integer)
    log_index: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(40))
    escrow_id: Mapped[int | None]
    #: decoded arguments in JSON form (uint256 as decimal strings, bytes as 0x hex)
    args: Mapped[dict[str, Any]]


class EscrowRow(Base):
    """Projection of one escrow folded from its events; rebuilt whenever its events change."""

    __tablename__ = "escrow"
    __table_args__ = (
        Index("ix_escrow_client", "chain_id", "client"),
        Index("ix_escrow_provider", "chain_id", "provider"),
        Index("ix_escrow_arbiter", "chain_id", "arbiter"),
        Index("ix_escrow_oracle", "chain_id", "oracle"),
    )

    chain_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    escrow_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    client: Mapped[str] = mapped_column(ADDRESS)
    provider: Mapped[str] = mapped_column(ADDRESS)
    token: Mapped[str] = mapped_column(ADDRESS)
    oracle: Mapped[str] = mapped_column(ADDRESS)
    arbiter: Mapped[str] = mapped_column(ADDRESS)
    terms_hash: Mapped[str] = mapped_column(HASH)
    params: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    total: Mapped[str] = mapped_column(AMOUNT)
    locked: Mapped[str] = mapped_column(AMOUNT)
    reserved: Mapped[str] = mapped_column(AMOUNT)
    refunded: Mapped[str] = mapped_column(AMOUNT)
    created_block: Mapped[int]
    created_tx: Mapped[str] = mapped_column(HASH)
    created_at: Mapped[int]
    accepted_at: Mapped[int | None]
    updated_block: Mapped[int]


# ------------------------------------------------------------------ documents


class TermsDocument(Base):
    __tablename__ = "terms_document"

    terms_hash: Mapped[str] = mapped_column(HASH, primary_key=True)
    #: the RFC 8785 canonical JSON text whose keccak256 is `terms_hash`
    canonical: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int]


class Attachment(Base):
    """An uploaded file, stored content-addressed under the data dir."""

    __tablename__ = "attachment"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    created_at: Mapped[int]


class Review(Base):
    """A client's review (comment + attachment digests) bound on-chain as `commentHash`."""

    __tablename__ = "review"

    comment_hash: Mapped[str] = mapped_column(HASH, primary_key=True)
    canonical: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int]


class MilestoneDocument(Base):
    """A party's document of a milestone bound on-chain by its hash, content-addressed like a
    review (`backend/escrows/milestone_documents.py`): the provider's delivery document (note +
    attachments, the `deliveryHash` of `submitDelivery`) or the client's dispute reason (reason +
    attachments, the `reasonHash` of `openDispute`)."""

    __tablename__ = "milestone_document"

    document_hash: Mapped[str] = mapped_column(HASH, primary_key=True)
    #: `delivery` or `dispute` (`milestone_documents.KINDS`); the escrow detail shows a document
    #: only behind a hash of its own kind
    kind: Mapped[str] = mapped_column(String(16))
    #: the RFC 8785 canonical JSON text whose keccak256 is `document_hash`
    canonical: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int]


# ------------------------------------------------------------------ outbox (signed transactions)


class OutboxTransaction(Base):
    """One signed transaction of one sender (`backend/outbox/sender.py`): its raw bytes and hash
    are stored (committed) before anything leaves the process, and only these bytes are ever
    broadcast. An outbox row (a confirmation, a breach report, its finalization) points at the
    transaction that carries it; a transaction whose nonce went to another one stays here as
    `superseded` and the row gets a new one.

    A transaction left unmined (priced under the base fee, or for `ESCROW_REPLACE_AFTER_BLOCKS`)
    gets a replacement: a new row with the same nonce and higher fees, `replaces_id` naming the
    version it replaces, stored before it is broadcast. Every transaction signed for one outbox
    row and phase (replacements, nonce fillers, fresh signatures) shares `first_id`, the first
    one's id (null on the first one itself); the versions of one nonce are those of them with
    that nonce.

    `status`: signed -> sent -> mined | reverted; `replaced` once a later version of its nonce
    is sent (it may still be the one mined); `superseded` when another transaction took its
    nonce; `reorged` when it was final and a reorg deeper than `ESCROW_CONFIRMATIONS` took it
    off the chain; `refused` when the node refused its bytes for good (its nonce went to the
    next transaction signed, or to a no-op filler)."""

    __tablename__ = "outbox_transaction"
    __table_args__ = (
        UniqueConstraint("chain_id", "tx_hash", name="uq_outbox_transaction_hash"),
        Index("ix_outbox_transaction_queue", "chain_id", "account", "status", "nonce"),
        Index("ix_outbox_transaction_first", "first_id"),
        Index("ix_outbox_transaction_escrow", "chain_id", "sender", "escrow_id"),
        Index("ix_outbox_transaction_behalf", "chain_id", "sender", "on_behalf_of"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int]
    #: the sending account (EIP-55)
    account: Mapped[str] = mapped_column(ADDRESS)
    #: which sender signed it ("relayer", "oracle"): its ownership lock and metrics label
    sender: Mapped[str] = mapped_column(String(32))
    #: what the transaction does for its outbox row ("confirm", "report", "finalize")
    purpose: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[int]
    raw_tx: Mapped[str] = mapped_column(Text)
    tx_hash: Mapped[str] = mapped_column(HASH)
    status: Mapped[str] = mapped_column(String(16))
    #: why a broadcast was refused, the decoded reason of a mined revert
    error: Mapped[str | None] = mapped_column(Text)
    #: maxFeePerGas in wei (the gas price of a legacy transaction), a decimal string
    max_fee_per_gas: Mapped[str | None] = mapped_column(AMOUNT)
    #: maxPriorityFeePerGas in wei, a decimal string; null for a legacy transaction
    max_priority_fee_per_gas: Mapped[str | None] = mapped_column(AMOUNT)
    #: the version of the same nonce this one replaces (higher fees, or a nonce filler), or the
    #: transaction this one was signed after (its nonce went elsewhere, or a reorg took it)
    #: (an id of this table; not a declared foreign key, see migration 0006)
    replaces_id: Mapped[int | None]
    #: the first transaction signed for the same outbox row and phase (null on that one)
    first_id: Mapped[int | None]
    #: the head block when the node first took it (replacements count blocks from here)
    sent_block: Mapped[int | None]
    #: the block of its receipt, while it has one (cleared when a reorg takes the block away)
    block_number: Mapped[int | None]
    block_hash: Mapped[str | None] = mapped_column(HASH)
    #: the gas limit signed (null on transactions stored before migration 0010 read it back)
    gas_limit: Mapped[int | None]
    #: of the version mined or reverted: the receipt's `gasUsed`, and `effectiveGasPrice` in wei
    #: (a decimal string); what the sender paid is their product
    gas_used: Mapped[int | None]
    gas_price: Mapped[str | None] = mapped_column(AMOUNT)
    #: whom it was sent for, for the spend bounds (`backend/outbox/spend.py`): the escrow, and
    #: the client whose signed confirmation the relayer sends (null for the oracle's reports)
    escrow_id: Mapped[int | None]
    on_behalf_of: Mapped[str | None] = mapped_column(ADDRESS)
    created_at: Mapped[int]
    updated_at: Mapped[int]

    @property
    def root_id(self) -> int:
        """The id every transaction of its outbox row and phase shares (`first_id`)."""
        return self.id if self.first_id is None else self.first_id


class OutboxRow(Base):
    """What every outbox table has (`ConfirmationRequest`, `BreachSubmission`): a row is written
    before anything is sent, and the sender (`backend/outbox/sender.py`) moves it."""

    __abstract__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int]
    #: the decoded reason of a refusal or a revert; a note on a row settled without sending
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int]
    updated_at: Mapped[int]


class SenderNonce(Base):
    """The next nonce of an account this service sends from (one owner per account)."""

    __tablename__ = "sender_nonce"

    chain_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(ADDRESS, primary_key=True)
    next_nonce: Mapped[int]


# ------------------------------------------------------------------ relay outbox


class ConfirmationRequest(OutboxRow):
    """Outbox row of the confirmation relayer: written before anything is sent; the signed
    `confirmWithSig` that carries it is `transaction` (an `OutboxTransaction`)."""

    __tablename__ = "confirmation_request"
    __table_args__ = (
        UniqueConstraint("chain_id", "escrow_id", "milestone", name="uq_confirmation_milestone"),
        Index("ix_confirmation_status", "status"),
    )

    escrow_id: Mapped[int]
    milestone: Mapped[int]
    rating: Mapped[int] = mapped_column(Integer)
    comment_hash: Mapped[str] = mapped_column(HASH)
    deadline: Mapped[int]
    #: 65 bytes for a plain key; ERC-1271 wallets (a Safe's owners) may sign with more
    signature: Mapped[str] = mapped_column(Text)
    signer: Mapped[str] = mapped_column(ADDRESS)
    #: pending -> signed -> sent -> mined | failed; `settled` when someone else's transaction
    #: carrying the same signed confirmation settled the milestone first (a front-run relay)
    status: Mapped[str] = mapped_column(String(16))
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_transaction.id", name="fk_confirmation_request_transaction")
    )

    transaction: Mapped[OutboxTransaction | None] = relationship(lazy="selectin")

    @property
    def tx_hash(self) -> str | None:
        """The hash of the current transaction, if one was signed."""
        return None if self.transaction is None else self.transaction.tx_hash

    @property
    def nonce(self) -> int | None:
        return None if self.transaction is None else self.transaction.nonce


# ------------------------------------------------------------------ notifications


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(ADDRESS, index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[Any]]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[int]


class WebhookDelivery(Base):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_key", name="uq_webhook_delivery_event"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id"))
    event_type: Mapped[str] = mapped_column(String(40))
    #: what makes this notification unique (e.g. "milestone_settled:1:0")
    event_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[int | None]
    created_at: Mapped[int]


class SiweNonce(Base):
    """A Sign-In with Ethereum nonce this service issued: usable once, until `expires_at`."""

    __tablename__ = "siwe_nonce"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued_at: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)
    used_at: Mapped[int | None]


# ------------------------------------------------------------------ KPI oracle


class MeasurementToken(Base):
    """A bearer token allowed to post samples for one escrow; only its sha256 is stored."""

    __tablename__ = "measurement_token"
    __table_args__ = (Index("ix_measurement_token_escrow", "chain_id", "escrow_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int]
    escrow_id: Mapped[int]
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[int]
    revoked_at: Mapped[int | None]


class KpiSample(Base):
    """One measured value of one KPI, unique per (escrow, kpi, observed_at)."""

    __tablename__ = "kpi_sample"
    __table_args__ = (
        UniqueConstraint("chain_id", "escrow_id", "kpi", "observed_at", name="uq_kpi_sample"),
        Index("ix_kpi_sample_time", "chain_id", "escrow_id", "observed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int]
    escrow_id: Mapped[int]
    kpi: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float(precision=53))
    observed_at: Mapped[int]
    received_at: Mapped[int]


class EvidenceBundle(Base):
    """The JSON evidence of one breach; `evidence_hash` is keccak256 of `canonical` (RFC 8785)."""

    __tablename__ = "evidence_bundle"
    __table_args__ = (Index("ix_evidence_escrow", "chain_id", "escrow_id"),)

    evidence_hash: Mapped[str] = mapped_column(HASH, primary_key=True)
    chain_id: Mapped[int]
    escrow_id: Mapped[int]
    kind: Mapped[int] = mapped_column(Integer)
    period: Mapped[int]
    canonical: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int]


class BreachSubmission(OutboxRow):
    """Oracle outbox row, keyed by (escrow, kind, period): written before anything is sent; its
    signed `reportBreach` is `report_tx` and, later, its `finalizeBreach` is `finalize_tx` (each
    an `OutboxTransaction`)."""

    __tablename__ = "breach_submission"
    __table_args__ = (
        UniqueConstraint("chain_id", "escrow_id", "kind", "period", name="uq_breach_submission"),
        Index("ix_breach_submission_status", "status"),
    )

    escrow_id: Mapped[int]
    kind: Mapped[int] = mapped_column(Integer)
    period: Mapped[int]
    evidence_hash: Mapped[str] = mapped_column(HASH)
    oracle: Mapped[str] = mapped_column(ADDRESS)
    #: pending -> signed -> sent -> mined | failed | not_sent (e.g. the escrow already closed)
    #: | off_chain (it would reserve nothing: recorded with its evidence, never sent)
    status: Mapped[str] = mapped_column(String(16))
    #: the signed `reportBreach`
    report_tx_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_transaction.id", name="fk_breach_submission_report_tx")
    )
    breach_id: Mapped[int | None]
    #: follow-up after the report: none -> finalize_signed -> finalize_sent -> done, or
    #: challenged -> resolved (the arbiter decided) ...
    follow_up: Mapped[str] = mapped_column(String(24), default="none")
    #: the signed `finalizeBreach`
    finalize_tx_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_transaction.id", name="fk_breach_submission_finalize_tx")
    )

    report_tx: Mapped[OutboxTransaction | None] = relationship(
        lazy="selectin", foreign_keys=[report_tx_id]
    )
    finalize_tx: Mapped[OutboxTransaction | None] = relationship(
        lazy="selectin", foreign_keys=[finalize_tx_id]
    )

    @property
    def tx_hash(self) -> str | None:
        """The hash of the report's transaction, if one was signed."""
        return None if self.report_tx is None else self.report_tx.tx_hash


# ------------------------------------------------------------------ deployments


class DeploymentRecord(Base):
    """One deployment of the contract this database served: (chain id, contract address, the
    deployment block's number and hash). At most one per chain is `active`; every chain-scoped
    row above belongs to it. When the chain no longer has it (a reset dev chain, where the same
    address and block number come back with another block hash), its rows are moved to
    `archived_row` and it becomes `archived` (`backend/db/deployments.py`)."""

    __tablename__ = "deployment"
    __table_args__ = (
        Index("ix_deployment_chain_status", "chain_id", "status"),
        #: one active deployment per chain, even when two processes start at once
        Index(
            "uq_deployment_active_chain", "chain_id", unique=True,
            postgresql_where=text("status = 'active'"), sqlite_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int]
    contract: Mapped[str] = mapped_column(ADDRESS)
    block_number: Mapped[int]
    #: the deployment block's hash; null for data found from before deployments were recorded
    #: whose index did not keep that block
    block_hash: Mapped[str | None] = mapped_column(HASH)
    #: active | archived
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int]
    archived_at: Mapped[int | None]
    #: why it was set aside ("chain reset: block 1 is now 0x.. (was 0x..)")
    archived_reason: Mapped[str | None] = mapped_column(Text)
    #: rows moved to `archived_row`, by table name
    archived_rows: Mapped[dict[str, Any] | None]


class ArchivedRow(Base):
    """One row of an archived deployment, kept as JSON (column name -> value) so nothing is
    lost while the live tables hold only the active deployment."""

    __tablename__ = "archived_row"
    __table_args__ = (Index("ix_archived_row_deployment", "deployment_id", "table_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployment.id", name="fk_archived_row_deployment")
    )
    table_name: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
