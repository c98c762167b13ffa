"""Follows the contract's events into the database.

`Indexer.sync()` ingests every block from the cursor up to `head - ESCROW_CONFIRMATIONS`:

- `eth_getLogs` filtered by the contract's address, in chunks of `ESCROW_INDEX_CHUNK_BLOCKS`,
  paged by `backend.chain.logs` (the audit's reader too): when the node refuses a range (range
  too large, too many results, timeout) the range is halved and retried, down to one block, and
  the span that worked is remembered for the node (a "too many results" one widened again after
  a run of successes); block headers come in batches that `backend.chain.bulk_rpc` splits down to
  what the node accepts, and a rate-limited request is retried with backoff by the provider
  (`backend.chain.connect`) before the sync fails with `NodeUnavailable`;
- each log is stored once by (tx hash, log index) with its block number, hash and time, the
  chunk's blocks go to `indexed_block`, the cursor moves and the projection of every escrow the
  chunk touched is refolded, all in one database transaction per chunk; listeners (webhooks) see
  the new rows inside that transaction;
- before each chunk the cursor block's hash is compared with the chain's. On a mismatch (a reorg)
  the common ancestor is the highest indexed block whose hash the chain still has (blocks form a
  hash chain, so a binary search over the indexed blocks finds it); every event and indexed block
  above it is deleted, the escrows whose events went are refolded and the cursor moves back, in
  one transaction, and the next chunks re-ingest the new branch;
- a chain that was reset is never mixed with the old index: when the contract's code is gone,
  when the deployment block itself (or every indexed block) has a different hash, or when the
  database already indexes another contract on the same chain, the cursor's `reset_detected`
  records why, the error is logged, ingestion stops and `/api/health` reports it; so it does
  when the chain no longer has the deployment the process started on (`Services.deployment`),
  even after `clear_index`: a restart archives the old deployment's rows and indexes the new one
  (`backend/db/deployments.py`).

`run_indexer` is the worker loop (`escrow index`); `index_once` runs one sync.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session
from web3.exceptions import BlockNotFound

from backend.chain.bulk_rpc import BlockHeader, RawLog, block_hash, block_headers, node_limits
from backend.chain.clock import service_time
from backend.chain.errors import UnknownEvent
from backend.chain.log_decoder import LogDecoder
from backend.chain.logs import logs_page
from backend.db.models import ChainCursor, EscrowRow, EventLog, IndexedBlock
from backend.errors import QualityEscrowError
from backend.index.ledger import ChainEvent, EscrowLedger, fold
from backend.services import Services

logger = logging.getLogger(__name__)

Listener = Callable[[Session, Sequence[EventLog]], None]
DEFAULT_CHUNK = 2_000
ZERO_HASH = "0x" + "00" * 32
#: times one sync retries a chunk whose blocks changed while it was read
MAX_CHAIN_MOVES = 5
#: escrows refolded per query
_REFOLD_BATCH = 500


class ChainMovedError(QualityEscrowError, RuntimeError):
    """The chain changed (a reorg) while a chunk was being read; the chunk is retried."""

    code = "chain_moved"


# ------------------------------------------------------------------ projection


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
    refresh_projections(session, chain_id, [escrow_id])


def refresh_projections(
    session: Session,
    chain_id: int,
    escrow_ids: Iterable[int],
    *,
    recent: Mapping[int, Sequence[ChainEvent]] | None = None,
    recent_from: int | None = None,
) -> None:
    """`refresh_projection` for many escrows, with one query per batch instead of one each.

    `recent` (with `recent_from`) hands over events of blocks `>= recent_from` that the caller
    has just stored, so that only the older ones are read back; an escrow whose recent events
    start with its creation has no older ones and costs no query at all."""
    recent = recent or {}
    ids = sorted(set(escrow_ids))
    for i in range(0, len(ids), _REFOLD_BATCH):
        part = ids[i : i + _REFOLD_BATCH]
        events: dict[int, list[ChainEvent]] = defaultdict(list)
        older = [
            eid for eid in part
            if not (recent.get(eid) and recent[eid][0].name == "EscrowCreated")
        ]
        if older:
            query = (
                select(
                    EventLog.escrow_id,
                    EventLog.event,
                    EventLog.args,
                    EventLog.block_number,
                    EventLog.log_index,
                    EventLog.tx_hash,
                    EventLog.block_time,
                    EventLog.tx_index,
                )
                .where(EventLog.chain_id == chain_id, EventLog.escrow_id.in_(older))
                .order_by(EventLog.escrow_id, EventLog.block_number, EventLog.log_index)
            )
            if recent and recent_from is not None:
                query = query.where(EventLog.block_number < recent_from)
            for eid, name, args, number, log_index, tx_hash, block_time, tx_index in (
                session.execute(query)
            ):
                events[eid].append(
                    ChainEvent(name, args, number, log_index, tx_hash, block_time, tx_index)
                )
        existing = {
            r.escrow_id: r
            for r in session.scalars(
                select(EscrowRow).where(
                    EscrowRow.chain_id == chain_id, EscrowRow.escrow_id.in_(part)
                )
            )
        }
        for escrow_id in part:
            history = events.get(escrow_id, []) + list(recent.get(escrow_id, ()))
            _project(session, chain_id, escrow_id, fold(history) if history else None,
                     existing.get(escrow_id))


def _project(
    session: Session, chain_id: int, escrow_id: int, led: EscrowLedger | None, row: EscrowRow | None
) -> None:
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


# ------------------------------------------------------------------ indexer


class Indexer:
    def __init__(
        self,
        services: Services,
        *,
        confirmations: int | None = None,
        chunk: int | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.services = services
        self.w3 = services.w3
        self.chain_id = services.chain_id
        self.address = services.escrow.address
        self.contract = services.escrow.contract
        self.deployment_block = services.deployment_block
        settings = services.settings
        self.confirmations = settings.confirmations if confirmations is None else confirmations
        self.chunk = max(1, chunk or settings.index_chunk_blocks)
        self.listeners = list(listeners)
        #: why ingestion stopped (a reset chain), as last seen by `sync`
        self.reset_reason: str | None = None
        self._decoder = LogDecoder(self.contract.abi)

    @property
    def span(self) -> int:
        """The range asked of `eth_getLogs` now: `chunk`, or less after the node refused more."""
        window = node_limits(self.w3).log_window()
        return self.chunk if window is None else min(self.chunk, window)

    # ----------------------------------------------------------------- cursor

    def cursor(self, session: Session, *, lock: bool = False) -> ChainCursor:
        cursor = session.get(
            ChainCursor, (self.chain_id, self.address), with_for_update=lock or None
        )
        if cursor is None:
            cursor = ChainCursor(
                chain_id=self.chain_id,
                contract=self.address,
                deployment_block=self.deployment_block,
                block_number=self.deployment_block - 1,
                block_hash=ZERO_HASH,
                reset_detected=None,
                updated_at=service_time(),
            )
            session.add(cursor)
            session.flush()
        return cursor

    def _has_indexed(self, cursor: ChainCursor) -> bool:
        return cursor.block_number >= cursor.deployment_block

    # ------------------------------------------------------------------- sync

    def target_block(self) -> int:
        return int(self.w3.eth.block_number) - self.confirmations

    def sync(self) -> int:
        """Ingests everything up to the confirmed head; returns how many logs were stored.

        Returns early (storing nothing more) when the chain was reset: see `reset_reason`."""
        stored = 0
        target = self.target_block()
        first, moves = True, 0
        while True:
            try:
                with self.services.sessions() as session, session.begin():
                    cursor = self.cursor(session, lock=True)
                    step = self._step(session, cursor, target, first=first)
            except ChainMovedError as exc:
                moves += 1
                if moves > MAX_CHAIN_MOVES:
                    raise
                logger.warning("indexer: %s; reading the chunk again", exc,
                               extra={"event": "index_chain_moved", "chain_id": self.chain_id})
                continue
            first = False
            if step is None:
                return stored
            stored += step

    def _step(
        self, session: Session, cursor: ChainCursor, target: int, *, first: bool
    ) -> int | None:
        """One unit of work in one transaction: a rollback (0), a chunk (its events) or None
        when there is nothing to do (caught up, or stopped on a reset chain)."""
        if cursor.reset_detected and self._has_indexed(cursor):
            self.reset_reason = cursor.reset_detected  # stays until `clear_index`
            return None
        # once per sync, and whenever a flag stands on an empty index (nothing to mix: look again)
        if first or cursor.reset_detected:
            reason = (
                self._other_contract(session)
                or self._code_gone(cursor)
                or self.services.deployment.check()
            )
            if reason:
                self._flag_reset(cursor, reason)
                return None
            cursor.reset_detected = None
        self.reset_reason = None
        if self._has_indexed(cursor) and block_hash(self.w3, cursor.block_number) != (
            cursor.block_hash
        ):
            return self._reconcile(session, cursor)
        start = cursor.block_number + 1
        if start > target:
            return None
        end, logs = logs_page(self.w3, self.address, start, min(target, start + self.chunk - 1))
        return self._ingest(session, cursor, start, end, logs)

    # ------------------------------------------------------------ resets

    def _other_contract(self, session: Session) -> str | None:
        other = session.scalar(
            select(ChainCursor.contract).where(
                ChainCursor.chain_id == self.chain_id,
                ChainCursor.contract != self.address,
                ChainCursor.block_number >= ChainCursor.deployment_block,
            )
        )
        if other is None:
            return None
        return (
            f"this database already indexes contract {other} on chain {self.chain_id}; "
            f"refusing to mix its escrows with those of {self.address}"
        )

    def _code_gone(self, cursor: ChainCursor) -> str | None:
        if self.w3.eth.get_code(self.address):
            return None
        where = f"no contract code at {self.address} on chain {self.chain_id}"
        if not self._has_indexed(cursor):
            return f"{where}: wrong address, or not deployed yet"
        return (
            f"chain reset detected: {where} any more (indexed up to block {cursor.block_number}); "
            "indexing stopped so old and new data never mix"
        )

    def _flag_reset(self, cursor: ChainCursor, reason: str) -> None:
        if cursor.reset_detected != reason:
            logger.error("indexer stopped (chain %d, %s): %s", self.chain_id, self.address, reason,
                         extra={"event": "index_stopped", "chain_id": self.chain_id,
                                "contract": self.address, "reason": reason})
        cursor.reset_detected = reason
        cursor.updated_at = service_time()
        self.reset_reason = reason

    def _reconcile(self, session: Session, cursor: ChainCursor) -> int | None:
        """The cursor block is no longer on the chain: roll back to the common ancestor, or stop
        when nothing indexed is left on the chain (a reset)."""
        reason = self._code_gone(cursor)
        if reason:
            self._flag_reset(cursor, reason)
            return None
        stored = session.execute(
            select(IndexedBlock.number, IndexedBlock.hash)
            .where(
                IndexedBlock.chain_id == self.chain_id,
                IndexedBlock.number >= cursor.deployment_block,
                IndexedBlock.number <= cursor.block_number,
            )
            .order_by(IndexedBlock.number)
        ).all()
        if not stored:
            self._rollback(session, cursor, cursor.deployment_block - 1, ZERO_HASH)
            return 0
        first_number, first_hash = stored[0]
        if first_number == cursor.deployment_block:
            now = block_hash(self.w3, first_number)
            if now != first_hash:
                self._flag_reset(cursor, (
                    f"chain reset detected: block {first_number}, where the contract was "
                    f"deployed, is {now or 'missing'} on the chain but {first_hash} in the "
                    "index; indexing stopped so old and new data never mix"
                ))
                return None
        # matches form a prefix (each block commits to its parent): binary search the last one
        lo, hi, best = 0, len(stored) - 1, -1
        while lo <= hi:
            mid = (lo + hi) // 2
            number, stored_hash = stored[mid]
            if block_hash(self.w3, number) == stored_hash:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        if best < 0:
            self._flag_reset(cursor, (
                f"chain reset detected: none of the {len(stored)} indexed blocks up to "
                f"{cursor.block_number} is on the chain any more; indexing stopped so old and "
                "new data never mix"
            ))
            return None
        number, ancestor_hash = stored[best]
        self._rollback(session, cursor, number, ancestor_hash)
        return 0

    def _rollback(self, session: Session, cursor: ChainCursor, number: int, hash_: str) -> None:
        """Deletes everything above block `number` and refolds what it touched (the caller's
        transaction makes it one unit)."""
        above = (
            EventLog.chain_id == self.chain_id,
            EventLog.contract == self.address,
            EventLog.block_number > number,
        )
        affected = session.scalars(
            select(EventLog.escrow_id).where(*above, EventLog.escrow_id.is_not(None)).distinct()
        ).all()
        removed = session.execute(
            delete(EventLog).where(*above).execution_options(synchronize_session=False)
        )
        session.execute(
            delete(IndexedBlock)
            .where(IndexedBlock.chain_id == self.chain_id, IndexedBlock.number > number)
            .execution_options(synchronize_session=False)
        )
        refresh_projections(session, self.chain_id, [a for a in affected if a is not None])
        logger.warning(
            "chain reorganisation: block %d no longer has hash %s; rolled back to block %d "
            "(%d events removed, %d escrows refolded)",
            cursor.block_number, cursor.block_hash, number,
            getattr(removed, "rowcount", -1), len(affected),
            extra={"event": "index_reorg", "chain_id": self.chain_id, "contract": self.address,
                   "from_block": cursor.block_number, "to_block": number,
                   "lost_hash": cursor.block_hash,
                   "events_removed": getattr(removed, "rowcount", -1),
                   "escrows": len(affected)},
        )
        cursor.block_number, cursor.block_hash = number, hash_
        cursor.updated_at = service_time()

    # ------------------------------------------------------------ ingestion

    def _ingest(
        self, session: Session, cursor: ChainCursor, start: int, end: int, logs: list[RawLog]
    ) -> int:
        logs = [log for log in logs if not log.removed]
        numbers = {log.block_number for log in logs} | {start, end}
        try:
            headers = block_headers(self.w3, numbers)
        except BlockNotFound as exc:
            raise ChainMovedError(f"blocks {start}-{end} changed while read: {exc}") from exc
        if self._has_indexed(cursor) and headers[start].parent_hash != cursor.block_hash:
            raise ChainMovedError(f"block {start} no longer follows the cursor block")
        rows = self._rows(logs, headers)
        fresh = self._store(session, start, end, rows)
        # every event of the chunk (stored now or, should any be, before) is handed to the refold
        recent: dict[int, list[ChainEvent]] = defaultdict(list)
        for r in rows:
            if r["escrow_id"] is not None:
                recent[r["escrow_id"]].append(ChainEvent(
                    r["event"], r["args"], r["block_number"], r["log_index"], r["tx_hash"],
                    r["block_time"], r["tx_index"],
                ))
        refresh_projections(session, self.chain_id, recent, recent=recent, recent_from=start)
        session.execute(
            delete(IndexedBlock)
            .where(
                IndexedBlock.chain_id == self.chain_id,
                IndexedBlock.number >= start,
                IndexedBlock.number <= end,
            )
            .execution_options(synchronize_session=False)
        )
        session.execute(
            insert(IndexedBlock),
            [
                {"chain_id": self.chain_id, "number": n, "hash": headers[n].hash}
                for n in sorted(numbers)
            ],
        )
        cursor.block_number, cursor.block_hash = end, headers[end].hash
        cursor.updated_at = service_time()
        if self.listeners:
            stored = self._stored_rows(session, start, end, fresh)
            for listener in self.listeners:
                listener(session, stored)
        logger.info(
            "indexed blocks %d-%d: %d events, %d escrows", start, end, len(fresh), len(recent),
            extra={"event": "index_batch", "chain_id": self.chain_id, "contract": self.address,
                   "from_block": start, "to_block": end, "events": len(fresh),
                   "escrows": len(recent)},
        )
        return len(fresh)

    def _rows(
        self, logs: list[RawLog], headers: dict[int, BlockHeader]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for log in logs:
            header = headers[log.block_number]
            if header.hash != log.block_hash:
                raise ChainMovedError(f"block {log.block_number} changed while its logs were read")
            try:
                name, args = self._decoder.decode(log.topics, log.data)
            except UnknownEvent as exc:
                logger.warning("skipping a log of block %d: %s", log.block_number, exc)
                continue
            escrow_id = args.get("escrowId")
            rows.append({
                "chain_id": self.chain_id,
                "contract": self.address,
                "block_number": log.block_number,
                "block_hash": log.block_hash,
                "block_time": header.timestamp,
                "tx_hash": log.tx_hash,
                "tx_index": log.tx_index,
                "log_index": log.log_index,
                "event": name,
                "escrow_id": None if escrow_id is None else int(escrow_id),
                "args": args,
            })
        return rows

    def _store(
        self, session: Session, start: int, end: int, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Inserts the rows not stored yet (by tx hash and log index); returns them."""
        if not rows:
            return []
        existing = {
            (tx_hash, log_index)
            for tx_hash, log_index in session.execute(
                select(EventLog.tx_hash, EventLog.log_index).where(
                    EventLog.chain_id == self.chain_id,
                    EventLog.block_number >= start,
                    EventLog.block_number <= end,
                )
            )
        }
        fresh = [r for r in rows if (r["tx_hash"], r["log_index"]) not in existing]
        if fresh:
            _bulk_insert(session, fresh)
        return fresh

    def _stored_rows(
        self, session: Session, start: int, end: int, rows: list[dict[str, Any]]
    ) -> list[EventLog]:
        """The just-inserted rows as ORM objects, in chain order (for listeners)."""
        if not rows:
            return []
        keys = {(r["tx_hash"], r["log_index"]) for r in rows}
        found = session.scalars(
            select(EventLog)
            .where(
                EventLog.chain_id == self.chain_id,
                EventLog.block_number >= start,
                EventLog.block_number <= end,
            )
            .order_by(EventLog.block_number, EventLog.log_index)
        )
        return [row for row in found if (row.tx_hash, row.log_index) in keys]


_COLUMNS = (
    "chain_id", "contract", "block_number", "block_hash", "block_time", "tx_hash", "tx_index",
    "log_index", "event", "escrow_id", "args",
)


def _bulk_insert(session: Session, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL through psycopg 3: one COPY (several times faster than batched INSERTs);
    elsewhere executemany."""
    dialect = session.get_bind().dialect
    if (dialect.name, dialect.driver) != ("postgresql", "psycopg"):
        session.execute(insert(EventLog), rows)
        return
    session.flush()
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cur, cur.copy(
        f"COPY {EventLog.__tablename__} ({', '.join(_COLUMNS)}) FROM STDIN"
    ) as copy:
        for r in rows:
            copy.write_row([*(r[c] for c in _COLUMNS[:-1]), json.dumps(r["args"])])


# ------------------------------------------------------------------ operations


def clear_index(services: Services) -> int:
    """Forgets everything indexed on the services' chain (events, blocks, projections, cursors)
    so that the index is rebuilt from the chain; the operator's answer to a reset chain.
    Returns how many events were deleted."""
    chain_id = services.chain_id
    with services.sessions() as session, session.begin():
        removed = session.execute(delete(EventLog).where(EventLog.chain_id == chain_id))
        session.execute(delete(IndexedBlock).where(IndexedBlock.chain_id == chain_id))
        session.execute(delete(EscrowRow).where(EscrowRow.chain_id == chain_id))
        session.execute(delete(ChainCursor).where(ChainCursor.chain_id == chain_id))
    count = int(getattr(removed, "rowcount", 0) or 0)
    logger.warning("cleared the index of chain %d (%d events)", chain_id, count)
    return count


def index_once(services: Services, *, listeners: Sequence[Listener] = ()) -> int:
    """One sync up to the confirmed head; returns how many events were stored."""
    return Indexer(services, listeners=listeners).sync()


#: longest wait between attempts after repeated failures
MAX_BACKOFF = 60.0


def run_indexer(
    services: Services,
    *,
    poll_interval: float,
    stop: threading.Event | None = None,
    listeners: Sequence[Listener] = (),
) -> None:
    """Syncs every `poll_interval` seconds until `stop` is set. Node or database errors are
    logged and retried with exponential backoff (up to `MAX_BACKOFF`); a reset chain is logged
    once and then waited on (health reports it) without ingesting anything."""
    stop = stop or threading.Event()
    indexer = Indexer(services, listeners=listeners)
    failures = 0
    reported: str | None = None
    logger.info(
        "indexer started: chain %d, contract %s, %d confirmations, chunks of %d blocks",
        services.chain_id, indexer.address, indexer.confirmations, indexer.chunk,
    )
    while not stop.is_set():
        delay = poll_interval
        try:
            stored = indexer.sync()
        except Exception as exc:
            failures += 1
            delay = min(MAX_BACKOFF, max(poll_interval, 0.1) * 2 ** min(failures, 10))
            logger.warning(
                "indexer: sync failed (%d in a row): %s; retrying in %.1f s",
                failures, _short(exc), delay, exc_info=failures == 1,
            )
        else:
            if failures:
                logger.info("indexer: recovered after %d failed attempts", failures)
            failures = 0
            if indexer.reset_reason and indexer.reset_reason != reported:
                logger.error("indexer: not ingesting: %s", indexer.reset_reason)
            reported = indexer.reset_reason
            if stored:
                logger.info("indexer: %d new events", stored)
        stop.wait(delay)
    logger.info("indexer stopped")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
