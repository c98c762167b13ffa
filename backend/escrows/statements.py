"""The accounting statement of one escrow (`GET /api/escrows/{id}/statement.csv`): one row per
money movement of `backend.index.ledger`, with the transaction that made it and when.

`MovementRow` and `write_csv` are shared with the account-wide export
(`backend.escrows.ledger_export`); both write through `backend.escrows.csv_writer`, which
neutralises cells a spreadsheet would run as formulas (a token's symbol is chosen by whoever
deployed the token)."""

from __future__ import annotations

import io
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from typing import TextIO

from backend.chain.tokens import TokenInfo
from backend.escrows import csv_writer
from backend.index.ledger import EscrowLedger, Movement

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


@dataclass(frozen=True)
class MovementRow:
    """One CSV row: every field already formatted (blank for "not applicable")."""

    time: str
    time_utc: str
    block: str
    tx_hash: str
    log_index: str
    escrow: str
    milestone: str
    breach: str
    movement: str
    account: str
    counterparty: str
    token: str
    token_address: str
    amount: str
    amount_base_units: str

    def cells(self) -> list[str]:
        return list(astuple(self))


def iso_time(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def movement_row(escrow_id: int | None, m: Movement, token: TokenInfo) -> MovementRow:
    return MovementRow(
        time=str(m.block_time),
        time_utc=iso_time(m.block_time),
        block=str(m.block_number),
        tx_hash=m.tx_hash,
        log_index=str(m.log_index),
        escrow=_blank(escrow_id),
        milestone=_blank(m.milestone),
        breach=_blank(m.breach_id),
        movement=m.kind,
        account=m.account,
        counterparty=m.counterparty,
        token=token.label,
        token_address=token.address,
        amount=token.format_amount(m.amount),
        amount_base_units=str(m.amount),
    )


def statement_rows(led: EscrowLedger, token: TokenInfo) -> list[list[str]]:
    return [movement_row(led.escrow_id, m, token).cells() for m in led.movements]


def write_csv(rows: list[MovementRow], stream: TextIO) -> None:
    """The header and `rows` as CSV (RFC 4180 line ends) to `stream`, through the service's one
    CSV writer (`backend.escrows.csv_writer`: a cell that a spreadsheet would read as a formula,
    such as a token symbol `=HYPERLINK(...)`, gets a single quote in front)."""
    csv_writer.write_csv(stream, COLUMNS, (row.cells() for row in rows))


def statement_csv(led: EscrowLedger, token: TokenInfo) -> str:
    out = io.StringIO()
    write_csv([movement_row(led.escrow_id, m, token) for m in led.movements], out)
    return out.getvalue()


def statement_filename(chain_id: int, escrow_id: int) -> str:
    return f"escrow-{chain_id}-{escrow_id}-statement.csv"
