"""One table of signed transactions for every sender (`outbox_transaction`), referenced from the
outbox rows: `confirmation_request.transaction_id`, `breach_submission.report_tx_id` and
`finalize_tx_id` replace the rows' own nonce / raw_tx / tx_hash / finalize_* columns. The stored
transactions are carried over (their sending account and nonce read from the signed bytes).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rlp  # type: ignore[import-untyped]
import sqlalchemy as sa
from alembic import op
from eth_account import Account

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: the outbox rows' state -> the state of the transaction they point at
_TX_STATUS = {
    "signed": "signed", "sent": "sent", "mined": "mined", "failed": "reverted",
    "finalize_signed": "signed", "finalize_sent": "sent", "done": "mined",
    "challenged": "reverted", "resolved": "reverted",
}

outbox_transaction = sa.table(
    "outbox_transaction",
    sa.column("id", BIGINT), sa.column("chain_id", BIGINT), sa.column("account", sa.String),
    sa.column("sender", sa.String), sa.column("purpose", sa.String), sa.column("nonce", BIGINT),
    sa.column("raw_tx", sa.Text), sa.column("tx_hash", sa.String), sa.column("status", sa.String),
    sa.column("error", sa.Text), sa.column("created_at", BIGINT), sa.column("updated_at", BIGINT),
)
confirmation_request = sa.table(
    "confirmation_request",
    sa.column("id", BIGINT), sa.column("chain_id", BIGINT), sa.column("status", sa.String),
    sa.column("nonce", BIGINT), sa.column("raw_tx", sa.Text), sa.column("tx_hash", sa.String),
    sa.column("error", sa.Text), sa.column("created_at", BIGINT),
    sa.column("updated_at", BIGINT), sa.column("transaction_id", BIGINT),
)
breach_submission = sa.table(
    "breach_submission",
    sa.column("id", BIGINT), sa.column("chain_id", BIGINT), sa.column("oracle", sa.String),
    sa.column("status", sa.String), sa.column("follow_up", sa.String),
    sa.column("nonce", BIGINT), sa.column("raw_tx", sa.Text), sa.column("tx_hash", sa.String),
    sa.column("finalize_raw_tx", sa.Text), sa.column("finalize_tx_hash", sa.String),
    sa.column("error", sa.Text), sa.column("created_at", BIGINT),
    sa.column("updated_at", BIGINT), sa.column("report_tx_id", BIGINT),
    sa.column("finalize_tx_id", BIGINT),
)


def _nonce(raw: bytes) -> int:
    """The nonce of signed transaction bytes: a typed one (EIP-2718: type byte, then the RLP list
    `[chainId, nonce, ...]` of EIP-2930 / EIP-1559) or a legacy one (`[nonce, ...]`)."""
    if raw[0] <= 0x7F:
        return int.from_bytes(rlp.decode(raw[1:])[1], "big")
    return int.from_bytes(rlp.decode(raw)[0], "big")


def _carry(
    conn: sa.Connection, row: Any, sender: str, purpose: str, state: str, raw_hex: str,
    tx_hash: str, nonce: int | None,
) -> int:
    """Stores one signed transaction of a row; returns its id."""
    raw = bytes.fromhex(raw_hex.removeprefix("0x"))
    conn.execute(
        outbox_transaction.insert().values(
            chain_id=row.chain_id,
            account=Account.recover_transaction(raw),
            sender=sender,
            purpose=purpose,
            nonce=_nonce(raw) if nonce is None else nonce,
            raw_tx=raw_hex,
            tx_hash=tx_hash,
            status=_TX_STATUS.get(state, "sent"),
            error=row.error if state in ("failed",) else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    )
    found = conn.scalar(
        sa.select(outbox_transaction.c.id).where(
            outbox_transaction.c.chain_id == row.chain_id,
            outbox_transaction.c.tx_hash == tx_hash,
        )
    )
    assert found is not None
    return int(found)


def upgrade() -> None:
    op.create_table(
        "outbox_transaction",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("chain_id", BIGINT, nullable=False),
        sa.Column("account", sa.String(length=42), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("nonce", BIGINT, nullable=False),
        sa.Column("raw_tx", sa.Text(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", BIGINT, nullable=False),
        sa.Column("updated_at", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id", "tx_hash", name="uq_outbox_transaction_hash"),
    )
    with op.batch_alter_table("outbox_transaction") as batch:
        batch.create_index(
            "ix_outbox_transaction_queue", ["chain_id", "account", "status", "nonce"],
            unique=False,
        )
    with op.batch_alter_table("confirmation_request") as batch:
        batch.add_column(sa.Column("transaction_id", BIGINT, nullable=True))
        batch.create_foreign_key(
            "fk_confirmation_request_transaction", "outbox_transaction", ["transaction_id"], ["id"]
        )
    with op.batch_alter_table("breach_submission") as batch:
        batch.add_column(sa.Column("report_tx_id", BIGINT, nullable=True))
        batch.add_column(sa.Column("finalize_tx_id", BIGINT, nullable=True))
        batch.create_foreign_key(
            "fk_breach_submission_report_tx", "outbox_transaction", ["report_tx_id"], ["id"]
        )
        batch.create_foreign_key(
            "fk_breach_submission_finalize_tx", "outbox_transaction", ["finalize_tx_id"], ["id"]
        )

    conn = op.get_bind()
    c = confirmation_request.c
    for row in conn.execute(sa.select(confirmation_request).where(c.raw_tx.is_not(None))).all():
        tx_id = _carry(conn, row, "relayer", "confirm", row.status, row.raw_tx, row.tx_hash,
                       row.nonce)
        conn.execute(
            confirmation_request.update().where(c.id == row.id).values(transaction_id=tx_id)
        )
    b = breach_submission.c
    for row in conn.execute(
        sa.select(breach_submission).where(
            sa.or_(b.raw_tx.is_not(None), b.finalize_raw_tx.is_not(None))
        )
    ).all():
        values: dict[str, int] = {}
        if row.raw_tx is not None:
            values["report_tx_id"] = _carry(
                conn, row, "oracle", "report", row.status, row.raw_tx, row.tx_hash, row.nonce
            )
        if row.finalize_raw_tx is not None:
            values["finalize_tx_id"] = _carry(
                conn, row, "oracle", "finalize", row.follow_up, row.finalize_raw_tx,
                row.finalize_tx_hash, None,
            )
        conn.execute(breach_submission.update().where(b.id == row.id).values(**values))

    with op.batch_alter_table("confirmation_request") as batch:
        batch.drop_column("nonce")
        batch.drop_column("raw_tx")
        batch.drop_column("tx_hash")
    with op.batch_alter_table("breach_submission") as batch:
        batch.drop_column("nonce")
        batch.drop_column("raw_tx")
        batch.drop_column("tx_hash")
        batch.drop_column("finalize_raw_tx")
        batch.drop_column("finalize_tx_hash")


def downgrade() -> None:
    with op.batch_alter_table("confirmation_request") as batch:
        batch.add_column(sa.Column("nonce", BIGINT, nullable=True))
        batch.add_column(sa.Column("raw_tx", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tx_hash", sa.String(length=66), nullable=True))
    with op.batch_alter_table("breach_submission") as batch:
        batch.add_column(sa.Column("nonce", BIGINT, nullable=True))
        batch.add_column(sa.Column("raw_tx", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tx_hash", sa.String(length=66), nullable=True))
        batch.add_column(sa.Column("finalize_raw_tx", sa.Text(), nullable=True))
        batch.add_column(sa.Column("finalize_tx_hash", sa.String(length=66), nullable=True))

    conn = op.get_bind()
    t = outbox_transaction.c
    for table, link, columns in (
        (confirmation_request, "transaction_id", ("nonce", "raw_tx", "tx_hash")),
        (breach_submission, "report_tx_id", ("nonce", "raw_tx", "tx_hash")),
        (breach_submission, "finalize_tx_id", (None, "finalize_raw_tx", "finalize_tx_hash")),
    ):
        rows = conn.execute(
            sa.select(table.c.id, t.nonce, t.raw_tx, t.tx_hash)
            .join(outbox_transaction, t.id == table.c[link])
        ).all()
        for row in rows:
            values = {
                name: value
                for name, value in zip(columns, (row.nonce, row.raw_tx, row.tx_hash), strict=True)
                if name is not None
            }
            conn.execute(
                table.update().where(table.c.id == row.id).values(**values)
            )

    with op.batch_alter_table("breach_submission") as batch:
        batch.drop_constraint("fk_breach_submission_finalize_tx", type_="foreignkey")
        batch.drop_constraint("fk_breach_submission_report_tx", type_="foreignkey")
        batch.drop_column("finalize_tx_id")
        batch.drop_column("report_tx_id")
    with op.batch_alter_table("confirmation_request") as batch:
        batch.drop_constraint("fk_confirmation_request_transaction", type_="foreignkey")
        batch.drop_column("transaction_id")
    with op.batch_alter_table("outbox_transaction") as batch:
        batch.drop_index("ix_outbox_transaction_queue")
    op.drop_table("outbox_transaction")
