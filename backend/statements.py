"""The accounting statement of one escrow (`GET /api/escrows/{id}/statement.csv`): one row per
money movement of `backend.ledger`, with the transaction that made it and when."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from backend.ledger import EscrowLedger
from backend.tokens import TokenInfo

COLUMNS = (
    "time",
    "time_utc",
    "block",
    "tx_hash",
    "log_index",
    "escrow",
    "milestone",
    "breach",
    "movement",
    "account",
    "counterparty",
    "token",
    "token_address",
    "amount",
    "amount_base_units",
)


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement_rows(led: EscrowLedger, token: TokenInfo) -> list[list[str]]:
    def blank(value: int | None) -> str:
        return "" if value is None else str(value)

    return [
        [
            str(m.block_time),
            _iso(m.block_time),
            str(m.block_number),
            m.tx_hash,
            str(m.log_index),
            str(led.escrow_id),
            blank(m.milestone),
            blank(m.breach_id),
            m.kind,
            m.account,
            m.counterparty,
            token.label,
            token.address,
            token.format_amount(m.amount),
            str(m.amount),
        ]
        for m in led.movements
    ]


def statement_csv(led: EscrowLedger, token: TokenInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(statement_rows(led, token))
    return out.getvalue()


def statement_filename(chain_id: int, escrow_id: int) -> str:
    return f"escrow-{chain_id}-{escrow_id}-statement.csv"
