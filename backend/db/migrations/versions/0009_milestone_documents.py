"""Milestone documents: the delivery documents of 0008 and the client's dispute reasons in one
content-addressed table, `milestone_document` (`document_hash`, `kind`, `canonical`,
`created_at`), since both are the same document with attachments behind a hash the contract
does not check (`backend/escrows/milestone_documents.py`).

Every delivery document is carried over as kind `delivery`. The downgrade carries the delivery
documents back to `delivery_document`; dispute reasons had no table before and are dropped.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "milestone_document",
        sa.Column("document_hash", sa.String(length=66), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("created_at", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("document_hash"),
    )
    op.execute(
        "INSERT INTO milestone_document (document_hash, kind, canonical, created_at) "
        "SELECT delivery_hash, 'delivery', canonical, created_at FROM delivery_document"
    )
    op.drop_table("delivery_document")


def downgrade() -> None:
    op.create_table(
        "delivery_document",
        sa.Column("delivery_hash", sa.String(length=66), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("created_at", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("delivery_hash"),
    )
    op.execute(
        "INSERT INTO delivery_document (delivery_hash, canonical, created_at) "
        "SELECT document_hash, canonical, created_at FROM milestone_document "
        "WHERE kind = 'delivery'"
    )
    op.drop_table("milestone_document")
