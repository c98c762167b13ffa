"""Fee replacements and reorg bookkeeping of `outbox_transaction`: the fee caps of each signed
transaction (`max_fee_per_gas`, `max_priority_fee_per_gas`, read back from the stored bytes of
the transactions already there), the version it replaces (`replaces_id`) and the first
transaction of its outbox row and phase (`first_id`), the head block when the node took it
(`sent_block`) and the block of its receipt (`block_number`, `block_hash`). New statuses:
`replaced` and `reorged` (mapped back to `superseded` and `mined` on downgrade).

`replaces_id` and `first_id` point within the table but are not declared foreign keys: adding or
dropping a foreign key on SQLite rebuilds the table, and SQLite cannot drop a table other tables
reference (`confirmation_request`, `breach_submission`) inside the migration's transaction. The
sender writes them, and transactions are never deleted.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp  # type: ignore[import-untyped]
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

outbox_transaction = sa.table(
    "outbox_transaction",
    sa.column("id", BIGINT), sa.column("raw_tx", sa.Text), sa.column("status", sa.String),
    sa.column("max_fee_per_gas", sa.String), sa.column("max_priority_fee_per_gas", sa.String),
)


def _fees(raw: bytes) -> tuple[int, int | None]:
    """(max fee or gas price, priority fee or None) of signed transaction bytes: EIP-1559
    `0x02 || rlp([chainId, nonce, tip, maxFee, ...])`, EIP-2930 `0x01 || rlp([chainId, nonce,
    gasPrice, ...])`, legacy `rlp([nonce, gasPrice, ...])`."""
    if raw[0] == 2:
        fields = rlp.decode(raw[1:])
        return int.from_bytes(fields[3], "big"), int.from_bytes(fields[2], "big")
    if raw[0] == 1:
        return int.from_bytes(rlp.decode(raw[1:])[2], "big"), None
    return int.from_bytes(rlp.decode(raw)[1], "big"), None


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN, no batch rebuild: other tables reference outbox_transaction,
    # and SQLite cannot drop a referenced table inside the migration's transaction
    for column in (
        sa.Column("max_fee_per_gas", sa.String(length=78), nullable=True),
        sa.Column("max_priority_fee_per_gas", sa.String(length=78), nullable=True),
        sa.Column("replaces_id", BIGINT, nullable=True),
        sa.Column("first_id", BIGINT, nullable=True),
        sa.Column("sent_block", BIGINT, nullable=True),
        sa.Column("block_number", BIGINT, nullable=True),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
    ):
        op.add_column("outbox_transaction", column)
    op.create_index("ix_outbox_transaction_first", "outbox_transaction", ["first_id"])

    conn = op.get_bind()
    t = outbox_transaction.c
    for row in conn.execute(sa.select(t.id, t.raw_tx)).all():
        max_fee, tip = _fees(bytes.fromhex(row.raw_tx.removeprefix("0x")))
        conn.execute(
            outbox_transaction.update().where(t.id == row.id).values(
                max_fee_per_gas=str(max_fee),
                max_priority_fee_per_gas=None if tip is None else str(tip),
            )
        )


def downgrade() -> None:
    conn = op.get_bind()
    t = outbox_transaction.c
    conn.execute(
        outbox_transaction.update().where(t.status == "replaced").values(status="superseded")
    )
    conn.execute(outbox_transaction.update().where(t.status == "reorged").values(status="mined"))
    op.drop_index("ix_outbox_transaction_first", table_name="outbox_transaction")
    for name in (
        "block_hash", "block_number", "sent_block", "first_id", "replaces_id",
        "max_priority_fee_per_gas", "max_fee_per_gas",
    ):
        op.drop_column("outbox_transaction", name)
