"""The service's health as `/api/health` reports it: `ok`, or `degraded` with every reason.

Degraded when the node does not answer (within `ESCROW_HEALTH_NODE_TIMEOUT` seconds: the node
is read through `services.probe`, so the answer comes in about that long whatever the node does),
when the chain no longer has the deployment served, when the indexer has not run yet, when it
stopped on a reset chain (the cursor's `reset_detected`), when the chain's head is below the
indexed block, when the index lags the confirmed head by more than `ESCROW_INDEX_MAX_LAG`
blocks, or when a worker of this process is not running: restarting after an error, or off (no
key configured for it). `workers` lists this process's workers (empty when it runs none).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from backend.chain.probe import NodeNotAnswering, wait
from backend.db.models import ChainCursor
from backend.db.session import database_unavailable
from backend.services import Services, WorkerStatus


@dataclass(frozen=True)
class Health:
    status: str
    reason: str | None
    chain_id: int
    contract: str
    head_block: int | None
    indexed_block: int | None
    #: confirmed head (head minus ESCROW_CONFIRMATIONS) minus the indexed block
    lag_blocks: int | None
    #: this process's background workers (`WorkerStatus`), in start order
    workers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_health(services: Services, session: Session | None = None) -> Health:
    """The health of `services` (see the module's docstring). The node's two reads (head,
    deployment block) run at once under one deadline of `ESCROW_HEALTH_NODE_TIMEOUT` seconds.
    Without a `session` the index's cursor is read in a session of its own, and a database that
    does not answer (`backend.db.session.database_unavailable`) is one more reason, not an
    error: the service says it is sick instead of failing the question."""
    reasons: list[str] = []
    head: int | None = None
    timeout = services.settings.health_node_timeout
    deadline = time.monotonic() + timeout
    w3 = services.w3
    reading_head = services.probe.start("block_number", lambda: int(w3.eth.block_number))
    reading_gone = services.probe.start("deployment", lambda: services.deployment.recent(0))
    try:
        head = wait(reading_head, deadline, "latest block", timeout)
    except NodeNotAnswering:
        reasons.append(
            f"node not answering: no answer within {timeout:g} s (ESCROW_HEALTH_NODE_TIMEOUT)"
        )
    except Exception as exc:  # the node is down or unreachable
        reasons.append(f"node unreachable: {_short(exc)}")
    cursor, database_down = _read_cursor(services, session)
    indexed: int | None = None
    lag: int | None = None
    if database_down is not None:
        reasons.append(database_down)
    elif cursor is None:
        reasons.append("indexer has not run yet")
    else:
        indexed = cursor.block_number
        if cursor.reset_detected:
            reasons.append(cursor.reset_detected)
    if head is not None and cursor is not None and indexed is not None:
        # nothing to index before the deployment block
        confirmed = max(head - services.settings.confirmations, cursor.deployment_block - 1)
        lag = confirmed - indexed
        if head < indexed:
            reasons.append(
                f"the chain's head {head} is below the indexed block {indexed}: "
                "the chain was reset or reorganised"
            )
        elif lag > services.settings.index_max_lag:
            reasons.append(
                f"index lags the chain by {lag} blocks (indexed {indexed}, confirmed head "
                f"{confirmed}; at most {services.settings.index_max_lag} allowed)"
            )
    gone: str | None = None
    if head is not None:
        try:
            gone = wait(reading_gone, deadline, "deployment block", timeout)
        except Exception:  # no answer in time: the last one stands
            gone = services.deployment.gone
    if gone is not None and not (cursor is not None and cursor.reset_detected):
        reasons.append(gone)  # the indexer's own finding, when it has one, says the same
    workers = services.workers.all()
    reasons.extend(r for r in (worker_reason(w) for w in workers) if r is not None)
    return Health(
        status="ok" if not reasons else "degraded",
        reason="; ".join(reasons) or None,
        chain_id=services.chain_id,
        contract=services.escrow.address,
        head_block=head,
        indexed_block=indexed,
        lag_blocks=lag,
        workers=[asdict(w) for w in workers],
    )


def worker_reason(status: WorkerStatus, now: float | None = None) -> str | None:
    """Why the worker makes the service degraded, or None while it runs (or was stopped)."""
    if status.state == "off":
        return f"worker {status.name} is off: {status.error}"
    if status.state != "restarting":
        return None
    when = ""
    if status.next_attempt_at is not None:
        left = max(0.0, status.next_attempt_at - (time.time() if now is None else now))
        when = f", next attempt in {left:.1f} s"
    return (
        f"worker {status.name} stopped with an error ({status.error}); restarted "
        f"{status.restarts} times so far{when}"
    )


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_cursor(
    services: Services, session: Session | None
) -> tuple[ChainCursor | None, str | None]:
    """The index's cursor of the served contract, and None; or (None, why) when the database
    did not answer (only without a `session` of the caller's: that one's errors are the
    caller's)."""
    key = (services.chain_id, services.escrow.address)
    if session is not None:
        return session.get(ChainCursor, key), None
    try:
        with services.sessions() as own:
            return own.get(ChainCursor, key), None
    except SQLAlchemyError as exc:
        outage = database_unavailable(exc)
        if outage is None:
            raise
        return None, f"database not answering: {outage.reason}"
