"""The service's health as `/api/health` reports it: `ok`, or `degraded` with every reason.

Degraded when the node does not answer, when the chain no longer has the deployment served,
when the indexer has not run yet, when it stopped on a reset chain (the cursor's
`reset_detected`), when the chain's head is below the indexed block, or when the index lags
the confirmed head by more than `ESCROW_INDEX_MAX_LAG` blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session

from backend.db.models import ChainCursor
from backend.services import Services


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_health(services: Services, session: Session) -> Health:
    reasons: list[str] = []
    head: int | None = None
    try:
        head = int(services.w3.eth.block_number)
    except Exception as exc:  # the node is down or unreachable
        reasons.append(f"node unreachable: {_short(exc)}")
    cursor = session.get(ChainCursor, (services.chain_id, services.escrow.address))
    indexed: int | None = None
    lag: int | None = None
    if cursor is None:
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
    gone = services.deployment.recent(0) if head is not None else None
    if gone is not None and not (cursor is not None and cursor.reset_detected):
        reasons.append(gone)  # the indexer's own finding, when it has one, says the same
    return Health(
        status="ok" if not reasons else "degraded",
        reason="; ".join(reasons) or None,
        chain_id=services.chain_id,
        contract=services.escrow.address,
        head_block=head,
        indexed_block=indexed,
        lag_blocks=lag,
    )


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
