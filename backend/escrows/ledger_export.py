"""The account-wide accounting export (`escrow ledger ACCOUNT --from DATE --to DATE`).

One row per money movement touching the account: every movement of `backend.index.ledger` of each
escrow where the account is client or provider and that credits the account or names it as the
counterparty, plus the account's own `Withdrawn` events (movement `withdrawal`, no escrow: a
withdrawal takes out the credit of all escrows in that token at once). Rows have the columns of
the per-escrow statement (`backend.escrows.statements`), dates are inclusive days in UTC, and rows
come in
chain order (block, log index).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import TextIO

from eth_utils import to_checksum_address
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.chain.tokens import TokenMetadata
from backend.config import Settings
from backend.db.models import EscrowRow, EventLog
from backend.escrows.statements import MovementRow, movement_row
from backend.escrows.statements import write_csv as _write_csv
from backend.index.indexer import row_to_event
from backend.index.ledger import ChainEvent, Movement, fold
from backend.services import Services, build_services

Row = MovementRow
WITHDRAWAL = "withdrawal"
#: what the contract itself is called in the account / counterparty columns
CONTRACT = "escrow"


def day_bounds(date_from: date | None, date_to: date | None) -> tuple[int | None, int | None]:
    """Unix seconds [start, end) of the inclusive UTC days `date_from`..`date_to`."""
    start = None if date_from is None else _midnight(date_from)
    end = None if date_to is None else _midnight(date_to + timedelta(days=1))
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


def export_ledger(
    settings: Settings,
    account: str,
    date_from: date | None,
    date_to: date | None,
    *,
    services: Services | None = None,
) -> list[Row]:
    """CLI glue: the rows of `ledger_rows` from the indexed database of `settings`."""
    own = services is None
    svc = services or build_services(settings)
    try:
        tokens = TokenMetadata(svc.w3)
        with svc.sessions() as session:
            return ledger_rows(session, svc.chain_id, tokens, account, date_from, date_to)
    finally:
        if own:
            svc.engine.dispose()


def write_csv(rows: list[Row], stream: TextIO) -> None:
    """The rows as CSV with the statement's header."""
    _write_csv(rows, stream)
