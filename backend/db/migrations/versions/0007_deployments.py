"""Deployments: which (chain id, contract, deployment block hash) the chain-scoped rows belong
to (`deployment`), and the rows of deployments the chain no longer has (`archived_row`).

Data from before this revision is adopted by the first deployment the service starts with, or
archived then when the chain shows it belongs to another one (`backend/db/deployments.py`).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("chain_id", BIGINT, nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("block_number", BIGINT, nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", BIGINT, nullable=False),
        sa.Column("archived_at", BIGINT, nullable=True),
        sa.Column("archived_reason", sa.Text(), nullable=True),
        sa.Column("archived_rows", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deployment_chain_status", "deployment", ["chain_id", "status"])
    op.create_index(
        "uq_deployment_active_chain", "deployment", ["chain_id"], unique=True,
        postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "archived_row",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("deployment_id", BIGINT, nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployment.id"], name="fk_archived_row_deployment"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_archived_row_deployment", "archived_row", ["deployment_id", "table_name"]
    )


def downgrade() -> None:
    op.drop_index("ix_archived_row_deployment", table_name="archived_row")
    op.drop_table("archived_row")
    op.drop_index("uq_deployment_active_chain", table_name="deployment")
    op.drop_index("ix_deployment_chain_status", table_name="deployment")
    op.drop_table("deployment")
