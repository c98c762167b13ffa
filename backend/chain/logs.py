"""Paging `eth_getLogs` over a range of blocks within what the node accepts: the one way the
indexer and the audit read the contract's logs.

Hosted nodes cap a query's range ("query exceeds max block range 100", "exceed maximum block
range: 5000", HTTP 413 "limited to a 10,000 blocks range") or its answer ("query returned more
than 10000 results", "Log response size exceeded", "query timeout exceeded"). A refused range is
halved and asked again, down to one block, and the span that worked is remembered in the
provider's `NodeLimits` (`backend.chain.bulk_rpc`) for every later page of the process: a range
cap for good, a result or size refusal until `GROW_AFTER` pages in a row pass, when the span is
doubled again. A rate limit or an unreachable node is not a refusal of the range: it is raised
(the provider of `backend.chain.connect` has already backed off).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import requests
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout
from web3 import Web3
from web3.exceptions import ProviderConnectionError

from backend.chain.bulk_rpc import RawLog, get_logs, node_limits
from backend.chain.errors import NodeUnavailable, is_rate_limited, is_transport_failure

logger = logging.getLogger(__name__)

#: a refusal that names a cap on the range itself (not on what the range holds)
_RANGE_CAP = re.compile(r"range", re.IGNORECASE)
#: ... unless it is about the size of the answer (Alchemy's "Log response size exceeded ... with
#: up to a 2K block range")
_ANSWER_SIZE = re.compile(r"result|response size|too many logs", re.IGNORECASE)


def logs_page(
    w3: Web3,
    address: str,
    start: int,
    end: int,
    *,
    topics: Sequence[str | None] | None = None,
) -> tuple[int, list[RawLog]]:
    """`(last, logs)`: the logs of blocks `start..last`, where `last <= end` is as far as the
    node accepts in one request now (`last == end` when it takes the whole range). A single
    block the node refuses raises the node's error."""
    limits = node_limits(w3)
    while True:
        window = limits.log_window()
        last = end if window is None else min(end, start + window - 1)
        try:
            logs = get_logs(w3, address, start, last, topics=topics)
        except Exception as exc:
            if last <= start or not is_range_refusal(exc):
                raise
            span = last - start + 1
            cap = is_range_cap(exc)
            now = limits.logs_refused(span, range_cap=cap)
            logger.info(
                "node refused logs of blocks %d-%d (%s); asking for %d blocks%s",
                start, last, _short(exc), now, " at most from now on" if cap else "",
            )
            continue
        limits.logs_accepted()
        return last, logs


def logs_between(
    w3: Web3,
    address: str,
    start: int,
    end: int,
    *,
    topics: Sequence[str | None] | None = None,
) -> list[RawLog]:
    """Every log of the contract in blocks `start..end`, in chain order, in as many pages as the
    node needs (`logs_page`)."""
    out: list[RawLog] = []
    while start <= end:
        last, logs = logs_page(w3, address, start, end, topics=topics)
        out.extend(logs)
        start = last + 1
    return out


def is_range_refusal(exc: BaseException) -> bool:
    """Whether a failed `eth_getLogs` may succeed over fewer blocks: any refusal or failure of
    the request (a JSON-RPC error, an HTTP error status, a slow answer), but not a rate limit,
    an unavailable node or one that cannot be reached at all (a refused or dropped
    connection)."""
    if isinstance(exc, NodeUnavailable) or is_rate_limited(exc):
        return False
    unreachable = (
        is_transport_failure(exc)
        and isinstance(exc, RequestsConnectionError | ConnectionError | ProviderConnectionError)
        and not isinstance(exc, RequestsTimeout)
    )
    return not unreachable


def is_range_cap(exc: BaseException) -> bool:
    """Whether the refusal names a cap on the block range (a property of the node, kept for
    good), as opposed to the size of the answer (which depends on the blocks)."""
    text = str(exc)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        text += " " + exc.response.text[:500]
    return bool(_RANGE_CAP.search(text)) and not _ANSWER_SIZE.search(text)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
