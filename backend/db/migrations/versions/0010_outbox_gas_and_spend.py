"""Gas bookkeeping of `outbox_transaction`, for the senders' gas caps and the relayer's spend
bounds (`backend/outbox/spend.py`): the gas limit signed (`gas_limit`, read back from the stored
bytes of the transactions already there), the gas a mined or reverted version used and the price
it paid per gas (`gas_used`, `gas_price`: the receipt's `gasUsed` and `effectiveGasPrice`), and
whom it was sent for (`escrow_id`, and `on_behalf_of`: the client whose signed confirmation the
relayer sends; null for the oracle's reports). New statuses: `refused` (the node refused the
stored bytes for good; its nonce went to the next row or to a no-op) on the transaction, and
`settled` on a confirmation request (its milestone was settled by someone else's transaction
carrying the client's signed confirmation); both mapped back on downgrade (`superseded`,
`mined`).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp  # type: ignore[import-untyped]
import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

outbox_transaction = sa.table(
    "outbox_transaction",
    sa.column("id", BIGINT), sa.column("raw_tx", sa.Text), sa.column("gas_limit", BIGINT),
    sa.column("status", sa.String),
)
confirmation_request = sa.table(
    "confirmation_request", sa.column("status", sa.String),
)


def _gas(raw: bytes) -> int:
    """The gas limit of signed transaction bytes: EIP-1559 `0x02 || rlp([chainId, nonce, tip,
    maxFee, gas, ...])`, EIP-2930 `0x01 || rlp([chainId, nonce, gasPrice, gas, ...])`, legacy
    `rlp([nonce, gasPrice, gas, ...])`."""
    if raw[0] == 2:
        return int.from_bytes(rlp.decode(raw[1:])[4], "big")
    if raw[0] == 1:
        return int.from_bytes(rlp.decode(raw[1:])[3], "big")
    return int.from_bytes(rlp.decode(raw)[2], "big")


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN, no batch rebuild (see 0006)
    for column in (
        sa.Column("gas_limit", BIGINT, nullable=True),
        sa.Column("gas_used", BIGINT, nullable=True),
        sa.Column("gas_price", sa.String(length=78), nullable=True),
        sa.Column("escrow_id", BIGINT, nullable=True),
        sa.Column("on_behalf_of", sa.String(length=42), nullable=True),
    ):
        op.add_column("outbox_transaction", column)
    op.create_index(
        "ix_outbox_transaction_escrow", "outbox_transaction", ["chain_id", "sender", "escrow_id"]
    )
    op.create_index(
        "ix_outbox_transaction_behalf", "outbox_transaction",
        ["chain_id", "sender", "on_behalf_of"],
    )
    conn = op.get_bind()
    t = outbox_transaction.c
    for row in conn.execute(sa.select(t.id, t.raw_tx)).all():
        conn.execute(
            outbox_transaction.update().where(t.id == row.id).values(
                gas_limit=_gas(bytes.fromhex(row.raw_tx.removeprefix("0x")))
            )
        )


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(
        outbox_transaction.update().where(outbox_transaction.c.status == "refused")
        .values(status="superseded")
    )
    conn.execute(
        confirmation_request.update().where(confirmation_request.c.status == "settled")
        .values(status="mined")
    )
    op.drop_index("ix_outbox_transaction_behalf", table_name="outbox_transaction")
    op.drop_index("ix_outbox_transaction_escrow", table_name="outbox_transaction")
    for name in ("on_behalf_of", "escrow_id", "gas_price", "gas_used", "gas_limit"):
        op.drop_column("outbox_transaction", name)
