"""The account-wide accounting export: `escrow ledger ACCOUNT --from DATE --to DATE` and
`GET /api/accounts/{address}/ledger.csv?from=DATE&to=DATE`, one rule for both front ends
(`parse_days`, `account_ledger`, `ledger_csv`).

One row per money movement touching the account: every movement of `backend.index.ledger` of each
escrow where the account is client or provider and that credits the account or names it as the
counterparty, plus the account's own `Withdrawn` events (movement `withdrawal`, no escrow: a
withdrawal takes out the credit of all escrows in that token at once). Rows have the columns of
the per-escrow statement (`backend.escrows.statements`), dates are inclusive days in UTC, and rows
come in
chain order (block, log index). An account no indexed escrow names as client or provider is
unknown (a mistyped address: CLI exit 2, HTTP 404); one whose movements all lie outside the days
gets the header only.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import TextIO

from eth_utils import to_checksum_address
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.chain.tokens import TokenMetadata
from backend.db.models import EscrowRow, EventLog
from backend.errors import NotFoundError, OutOfRangeError
from backend.escrows.statements import COLUMNS, MovementRow, movement_row
from backend.escrows.statements import write_csv as _write_csv
from backend.index.indexer import row_to_event
from backend.index.ledger import ChainEvent, Movement, fold

Row = MovementRow
WITHDRAWAL = "withdrawal"
#: what the contract itself is called in the account / counterparty columns
CONTRACT = "escrow"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EXPECTED_DAY = "a day YYYY-MM-DD (UTC)"


def parse_day(field: str, value: str | None) -> date | None:
    """`YYYY-MM-DD` as a date (None stays None); 422 for anything else (`20250301`, a time, a
    31 February)."""
    if value is None:
        return None
    if not _DAY.match(value):
        raise OutOfRangeError(field, value, _EXPECTED_DAY)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise OutOfRangeError(field, value, _EXPECTED_DAY) from None


def parse_days(
    date_from: str | None, date_to: str | None, fields: tuple[str, str] = ("from", "to")
) -> tuple[date | None, date | None]:
    """The inclusive UTC days of a ledger, each optional; 422 for a malformed one, or a first
    day after the last. `fields` name them in messages (`--from`, `--to` on the CLI)."""
    start, end = parse_day(fields[0], date_from), parse_day(fields[1], date_to)
    if start is not None and end is not None and start > end:
        raise OutOfRangeError(fields[0], date_from, f"a day no later than {fields[1]}={date_to}")
    return start, end


def day_bounds(date_from: date | None, date_to: date | None) -> tuple[int | None, int | None]:
    """Unix seconds [start, end) of the inclusive UTC days `date_from`..`date_to` (None: open;
    the last day there is, 9999-12-31, leaves the end open)."""
    start = None if date_from is None else _midnight(date_from)
    end = None if date_to is None or date_to >= date.max else _midnight(date_to + timedelta(days=1))
    return start, end


def _midnight(day: date) -> int:
    return int(datetime.combine(day, time.min, tzinfo=UTC).timestamp())


def _in_range(timestamp: int, start: int | None, end: int | None) -> bool:
    return (start is None or timestamp >= start) and (end is None or timestamp < end)


def _account_escrows(session: Session, chain_id: int, account: str) -> list[tuple[int, str]]:
    rows = session.execute(
        select(EscrowRow.escrow_id, EscrowRow.token)
        .where(
            EscrowRow.chain_id == chain_id,
            or_(EscrowRow.client == account, EscrowRow.provider == account),
        )
        .order_by(EscrowRow.escrow_id)
    )
    return [(int(eid), str(token)) for eid, token in rows]


def _escrow_events(session: Session, chain_id: int, ids: list[int]) -> dict[int, list[ChainEvent]]:
    events: dict[int, list[ChainEvent]] = defaultdict(list)
    if not ids:
        return events
    rows = session.scalars(
        select(EventLog)
        .where(EventLog.chain_id == chain_id, EventLog.escrow_id.in_(ids))
        .order_by(EventLog.escrow_id, EventLog.block_number, EventLog.log_index)
    )
    for row in rows:
        assert row.escrow_id is not None
        events[row.escrow_id].append(row_to_event(row))
    return events


def _withdrawals(session: Session, chain_id: int, account: str) -> list[tuple[Movement, str]]:
    """The account's `Withdrawn` events as movements, each with the token withdrawn."""
    rows = session.scalars(
        select(EventLog)
        .where(EventLog.chain_id == chain_id, EventLog.event == "Withdrawn")
        .order_by(EventLog.block_number, EventLog.log_index)
    )
    return [
        (
            Movement(WITHDRAWAL, int(r.args["amount"]), account, CONTRACT, None, None,
                     r.block_number, r.log_index, r.tx_hash, r.block_time),
            str(r.args["token"]),
        )
        for r in rows
        if to_checksum_address(r.args["account"]) == account
    ]


def ledger_rows(
    session: Session,
    chain_id: int,
    tokens: TokenMetadata,
    account: str,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[Row]:
    """The account's money movements between the two days (inclusive, UTC), in chain order."""
    account = to_checksum_address(account)
    start, end = day_bounds(date_from, date_to)
    keyed: list[tuple[tuple[int, int, int], Row]] = []
    escrows = _account_escrows(session, chain_id, account)
    events = _escrow_events(session, chain_id, [eid for eid, _ in escrows])
    for escrow_id, token_address in escrows:
        if not events.get(escrow_id):
            continue
        token = tokens.get(token_address)
        for m in fold(events[escrow_id]).movements:
            if account not in (m.account, m.counterparty):
                continue
            if _in_range(m.block_time, start, end):
                keyed.append(((m.block_number, m.log_index, len(keyed)),
                              movement_row(escrow_id, m, token)))
    for m, token_address in _withdrawals(session, chain_id, account):
        if _in_range(m.block_time, start, end):
            token = tokens.get(token_address)
            keyed.append(((m.block_number, m.log_index, len(keyed)), movement_row(None, m, token)))
    keyed.sort(key=lambda pair: pair[0])
    return [row for _, row in keyed]


def account_indexed(session: Session, chain_id: int, account: str) -> bool:
    """Whether an indexed escrow of this chain names `account` as client or provider."""
    return bool(_account_escrows(session, chain_id, to_checksum_address(account)))


def account_ledger(
    session: Session,
    chain_id: int,
    tokens: TokenMetadata,
    account: str,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[Row]:
    """`ledger_rows`, refused for an account no indexed escrow names (404 `unknown account`):
    an empty ledger of a known account is the header only, of a mistyped one an error."""
    rows = ledger_rows(session, chain_id, tokens, account, date_from, date_to)
    if not rows and not account_indexed(session, chain_id, account):
        raise NotFoundError(
            "account",
            f"{to_checksum_address(account)}: no indexed escrow on chain {chain_id} names it as "
            "client or provider",
        )
    return rows


def write_csv(rows: list[Row], stream: TextIO) -> None:
    """The rows as CSV with the statement's header."""
    _write_csv(rows, stream)


def ledger_csv(rows: list[Row]) -> str:
    """The CSV `escrow ledger` prints and `GET .../ledger.csv` answers."""
    out = io.StringIO()
    write_csv(rows, out)
    return out.getvalue()


def ledger_json(rows: list[Row]) -> list[dict[str, str]]:
    """The rows of `ledger_csv` as objects keyed by its header (`escrow ledger --json`): the
    same cells, amounts in base units as decimal strings, as they are (JSON is no spreadsheet:
    the single quote CSV puts before a formula-like cell is not added here)."""
    return [dict(zip(COLUMNS, row.cells(), strict=True)) for row in rows]


def ledger_filename(
    chain_id: int, account: str, date_from: date | None, date_to: date | None
) -> str:
    """`escrow-31337-ledger-0xAbC...[-from-2025-03-01][-to-2025-03-31].csv`."""
    name = f"escrow-{chain_id}-ledger-{to_checksum_address(account)}"
    if date_from is not None:
        name += f"-from-{date_from.isoformat()}"
    if date_to is not None:
        name += f"-to-{date_to.isoformat()}"
    return name + ".csv"
