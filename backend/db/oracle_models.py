"""Tables of the KPI oracle: measurement tokens, samples, evidence bundles and the outbox of
breach reports (issue 4). They share `backend.db.models.Base`."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db.models import ADDRESS, HASH, Base


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


class BreachSubmission(Base):
    """Oracle outbox row, keyed by (escrow, kind, period): written before anything is sent; a
    transaction is signed once and only its stored bytes are rebroadcast (as the relayer's)."""

    __tablename__ = "breach_submission"
    __table_args__ = (
        UniqueConstraint("chain_id", "escrow_id", "kind", "period", name="uq_breach_submission"),
        Index("ix_breach_submission_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int]
    escrow_id: Mapped[int]
    kind: Mapped[int] = mapped_column(Integer)
    period: Mapped[int]
    evidence_hash: Mapped[str] = mapped_column(HASH)
    oracle: Mapped[str] = mapped_column(ADDRESS)
    #: pending -> signed -> sent -> mined | failed | not_sent (e.g. the escrow already closed)
    status: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[int | None]
    raw_tx: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(HASH)
    breach_id: Mapped[int | None]
    #: follow-up after the report: none -> finalize_signed -> finalize_sent -> done, or
    #: challenged -> resolved (the arbiter decided) ...
    follow_up: Mapped[str] = mapped_column(String(24), default="none")
    finalize_raw_tx: Mapped[str | None] = mapped_column(Text)
    finalize_tx_hash: Mapped[str | None] = mapped_column(HASH)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int]
    updated_at: Mapped[int]
