"""siwe nonce: single-use Sign-In with Ethereum nonces (notifications)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 12:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "siwe_nonce",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("issued_at", _BIGINT, nullable=False),
        sa.Column("expires_at", _BIGINT, nullable=False),
        sa.Column("used_at", _BIGINT, nullable=True),
        sa.PrimaryKeyConstraint("nonce"),
    )
    with op.batch_alter_table("siwe_nonce", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_siwe_nonce_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("siwe_nonce", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_siwe_nonce_expires_at"))
    op.drop_table("siwe_nonce")
