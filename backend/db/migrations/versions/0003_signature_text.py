"""confirmation_request.signature as TEXT: ERC-1271 wallets may sign with more than 65 bytes.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("confirmation_request") as batch:
        batch.alter_column(
            "signature",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("confirmation_request") as batch:
        batch.alter_column(
            "signature",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
