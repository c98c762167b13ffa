"""Delivery documents (`delivery_document`: the provider's note and attachments behind a
`deliveryHash`, content-addressed like a review) and indexes for listing escrows by arbiter and
by oracle (`GET /api/escrows?arbiter=`, `?oracle=`, `?party=`).

The `escrow` projection already holds `arbiter` and `oracle` in their own columns (filled from
`params` since 0001), so nothing is backfilled.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "delivery_document",
        sa.Column("delivery_hash", sa.String(length=66), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("created_at", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("delivery_hash"),
    )
    op.create_index("ix_escrow_arbiter", "escrow", ["chain_id", "arbiter"])
    op.create_index("ix_escrow_oracle", "escrow", ["chain_id", "oracle"])


def downgrade() -> None:
    op.drop_index("ix_escrow_oracle", table_name="escrow")
    op.drop_index("ix_escrow_arbiter", table_name="escrow")
    op.drop_table("delivery_document")
