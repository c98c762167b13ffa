"""Follows the contract's events into the database.

`Indexer.sync()` ingests every block from the cursor up to `head - ESCROW_CONFIRMATIONS` with
`eth_getLogs` in chunks filtered by the contract's address, stores each log once by (tx hash, log
index) with its block number and hash, moves the cursor and refolds the projection of every
escrow it touched, all in one database transaction per chunk. Listeners (webhooks) see the new
rows inside that transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from web3.types import LogReceipt

from backend.chain.event_json import args_to_json
from backend.chain.transactions import event_from_log
from backend.db.models import ChainCursor, EscrowRow, EventLog, IndexedBlock
from backend.ledger import ChainEvent, EscrowLedger, fold
from backend.services import Services

logger = logging.getLogger(__name__)

Listener = Callable[[Session, Sequence[EventLog]], None]
DEFAULT_CHUNK = 2_000


def row_to_event(row: EventLog) -> ChainEvent:
    return ChainEvent(
        name=row.event,
        args=row.args,
        block_number=row.block_number,
        log_index=row.log_index,
        tx_hash=row.tx_hash,
        block_time=row.block_time,
        tx_index=row.tx_index,
    )


def escrow_events(session: Session, chain_id: int, escrow_id: int) -> list[ChainEvent]:
    rows = session.scalars(
        select(EventLog)
        .where(EventLog.chain_id == chain_id, EventLog.escrow_id == escrow_id)
        .order_by(EventLog.block_number, EventLog.log_index)
    )
    return [row_to_event(r) for r in rows]


def escrow_ledger(session: Session, chain_id: int, escrow_id: int) -> EscrowLedger | None:
    events = escrow_events(session, chain_id, escrow_id)
    return fold(events) if events else None


def refresh_projection(session: Session, chain_id: int, escrow_id: int) -> None:
    """Rebuilds the `escrow` row from the escrow's stored events (deleting it if none remain)."""
    led = escrow_ledger(session, chain_id, escrow_id)
    row = session.get(EscrowRow, (chain_id, escrow_id))
    if led is None:
        if row is not None:
            session.delete(row)
        return
    p = led.params
    values: dict[str, Any] = {
        "client": p.client,
        "provider": p.provider,
        "token": p.token,
        "oracle": p.oracle,
        "arbiter": p.arbiter,
        "terms_hash": "0x" + p.terms_hash.hex(),
        "params": p.to_json(),
        "status": led.status.name.lower(),
        "total": str(led.total),
        "locked": str(led.locked),
        "reserved": str(led.reserved),
        "refunded": str(led.refunded),
        "created_block": led.created_block,
        "created_tx": led.created_tx,
        "created_at": led.created_at,
        "accepted_at": led.accepted_at,
        "updated_block": led.last_block,
    }
    if row is None:
        session.add(EscrowRow(chain_id=chain_id, escrow_id=escrow_id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)


class Indexer:
    def __init__(
        self,
        services: Services,
        *,
        confirmations: int | None = None,
        chunk: int = DEFAULT_CHUNK,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.services = services
        self.w3 = services.w3
        self.chain_id = services.chain_id
        self.address = services.escrow.address
        self.contract = services.escrow.contract
        self.confirmations = (
            services.settings.confirmations if confirmations is None else confirmations
        )
        self.chunk = chunk
        self.listeners = list(listeners)
        self._topics = {
            bytes(self.w3.keccak(text=_signature(e))): str(e.get("name"))
            for e in self.contract.abi
            if e.get("type") == "event"
        }
        self._block_times: dict[int, int] = {}

    # ----------------------------------------------------------------- cursor

    def cursor(self, session: Session) -> ChainCursor:
        cursor = session.get(ChainCursor, (self.chain_id, self.address))
        if cursor is None:
            start = self.services.deployment_block - 1
            cursor = ChainCursor(
                chain_id=self.chain_id,
                contract=self.address,
                deployment_block=self.services.deployment_block,
                block_number=start,
                block_hash="0x" + "00" * 32,
                reset_detected=None,
                updated_at=int(time.time()),
            )
            session.add(cursor)
            session.flush()
        return cursor

    # ------------------------------------------------------------------- sync

    def target_block(self) -> int:
        return int(self.w3.eth.block_number) - self.confirmations

    def sync(self) -> int:
        """Ingests everything up to the confirmed head; returns how many logs were stored."""
        stored = 0
        target = self.target_block()
        while True:
            with self.services.sessions() as session, session.begin():
                cursor = self.cursor(session)
                start = cursor.block_number + 1
                if start > target:
                    return stored
                end = min(target, start + self.chunk - 1)
                stored += self._ingest(session, cursor, start, end)

    def _ingest(self, session: Session, cursor: ChainCursor, start: int, end: int) -> int:
        logs = self.w3.eth.get_logs(
            {"address": self.address, "fromBlock": start, "toBlock": end}
        )
        rows = [self._row(log) for log in logs]
        fresh = self._store(session, rows)
        touched = {r.escrow_id for r in fresh if r.escrow_id is not None}
        for escrow_id in sorted(touched):
            refresh_projection(session, self.chain_id, escrow_id)
        for block_number, block_hash in {(r.block_number, r.block_hash) for r in fresh}:
            session.merge(
                IndexedBlock(chain_id=self.chain_id, number=block_number, hash=block_hash)
            )
        end_block = self.w3.eth.get_block(end)
        end_hash = "0x" + bytes(end_block["hash"]).hex()
        session.merge(IndexedBlock(chain_id=self.chain_id, number=end, hash=end_hash))
        cursor.block_number, cursor.block_hash = end, end_hash
        cursor.updated_at = int(time.time())
        for listener in self.listeners:
            listener(session, fresh)
        return len(fresh)

    def _store(self, session: Session, rows: list[EventLog]) -> list[EventLog]:
        if not rows:
            return []
        existing = set(
            session.execute(
                select(EventLog.tx_hash, EventLog.log_index).where(
                    EventLog.chain_id == self.chain_id,
                    EventLog.tx_hash.in_({r.tx_hash for r in rows}),
                )
            ).tuples()
        )
        fresh = [r for r in rows if (r.tx_hash, r.log_index) not in existing]
        session.add_all(fresh)
        session.flush()
        return fresh

    def _block_time(self, number: int) -> int:
        cached = self._block_times.get(number)
        if cached is None:
            cached = int(self.w3.eth.get_block(number)["timestamp"])
            self._block_times[number] = cached
        return cached

    def _row(self, log: LogReceipt) -> EventLog:
        name = self._topics[bytes(log["topics"][0])]
        decoded = event_from_log(self.contract.events[name]().process_log(log))
        args = args_to_json(name, decoded.args)
        escrow_id = decoded.args.get("escrowId")
        return EventLog(
            chain_id=self.chain_id,
            contract=self.address,
            block_number=int(log["blockNumber"]),
            block_hash="0x" + bytes(log["blockHash"]).hex(),
            block_time=self._block_time(int(log["blockNumber"])),
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            tx_index=int(log["transactionIndex"]),
            log_index=int(log["logIndex"]),
            event=name,
            escrow_id=None if escrow_id is None else int(escrow_id),
            args=args,
        )


def _signature(abi: Any) -> str:
    def typ(inp: Any) -> str:
        t = str(inp["type"])
        if t.startswith("tuple"):
            return "(" + ",".join(typ(c) for c in inp["components"]) + ")" + t[len("tuple") :]
        return t

    return f"{abi['name']}({','.join(typ(i) for i in abi['inputs'])})"
