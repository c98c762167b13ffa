"""Bulk chain reads for the indexer and the audit: logs, block headers and `eth_call`s; the one
home of batched reads.

Over HTTP the JSON-RPC replies are parsed here directly (hex strings to ints and bytes) instead of
going through web3's per-field result formatters, which cost more than everything else the
indexer does per log (checksumming every log's address, wrapping every value). Block headers and
calls are asked for in JSON-RPC batches (`batch`) of at most the node's batch size: hosted nodes
cap batches (some at 2 or 3 calls), and a batch the node refuses is split in halves down to single
calls, the size that worked kept in the provider's `NodeLimits` for every later batch of the
process. `NodeLimits` also keeps the `eth_getLogs` span the node accepts (`backend.chain.logs`
pages ranges with it). Other providers (the in-process chain) go through web3 as usual.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import requests
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.datastructures import AttributeDict
from web3.exceptions import BadResponseFormat, BlockNotFound, TransactionNotFound
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse, TxReceipt

from backend.chain.connect import LimitedHTTPProvider, RpcPolicy
from backend.chain.errors import BlockMissing, NodeRefused, is_rate_limit_error

logger = logging.getLogger(__name__)

#: pages of logs in a row the node accepted before a span cut by "too many results" is doubled
GROW_AFTER = 10
#: an error of a batch item that refuses the batch, not the call: jsonrpsee's -32010 "The batch
#: request was too large", geth's -32600 "batch too large" and -32003 "response too large"
_BATCH_REFUSAL = re.compile(r"batch|too large|response size", re.IGNORECASE)
#: HTTP statuses with which gateways refuse a batch body (Bad Request, Content Too Large)
_BATCH_REFUSAL_STATUS = frozenset({400, 413})


@dataclass
class NodeLimits:
    """What one node was found to accept, kept as long as its provider lives and shared by every
    reader of the process (indexer, audit, API)."""

    #: calls per JSON-RPC batch: halved on each refused batch, never raised again
    batch_size: int
    #: blocks per eth_getLogs the node caps its ranges at ("max block range"): never exceeded
    log_cap: int | None = None
    #: blocks per eth_getLogs after a "too many results" (or size, timeout) refusal; doubled after
    #: `GROW_AFTER` pages in a row pass, as the density of logs changes along the chain
    log_span: int | None = None
    log_streak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def batch_refused(self, size: int) -> int:
        """A batch of `size` calls was refused: the batch size is at most half of it now."""
        with self.lock:
            self.batch_size = max(1, min(self.batch_size, size // 2))
            return self.batch_size

    def log_window(self) -> int | None:
        """The most blocks one eth_getLogs may span now (None: no known limit)."""
        with self.lock:
            spans = [s for s in (self.log_cap, self.log_span) if s is not None]
            return min(spans) if spans else None

    def logs_refused(self, span: int, *, range_cap: bool) -> int:
        """A range of `span` blocks was refused: halve it (for good when the node said its range
        is capped); returns the new window."""
        half = max(1, span // 2)
        with self.lock:
            if range_cap:
                self.log_cap = half if self.log_cap is None else min(self.log_cap, half)
            else:
                self.log_span = half if self.log_span is None else min(self.log_span, half)
            self.log_streak = 0
        return self.log_window() or half

    def logs_accepted(self) -> None:
        with self.lock:
            self.log_streak += 1
            if self.log_span is not None and self.log_streak >= GROW_AFTER:
                self.log_span, self.log_streak = self.log_span * 2, 0


_LIMITS: weakref.WeakKeyDictionary[Any, NodeLimits] = weakref.WeakKeyDictionary()
_LIMITS_LOCK = threading.Lock()


def node_limits(w3: Web3) -> NodeLimits:
    """The `NodeLimits` of `w3`'s provider, made from its `RpcPolicy` on first use."""
    provider = w3.provider
    policy = provider.policy if isinstance(provider, LimitedHTTPProvider) else RpcPolicy()
    with _LIMITS_LOCK:
        try:
            limits = _LIMITS.get(provider)
            if limits is None:
                limits = NodeLimits(batch_size=policy.batch_size, log_cap=policy.log_blocks)
                _LIMITS[provider] = limits
        except TypeError:  # a provider that cannot be a weak key: nothing is remembered
            limits = NodeLimits(batch_size=policy.batch_size, log_cap=policy.log_blocks)
    return limits


@dataclass(frozen=True, slots=True)
class RawLog:
    block_number: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int
    topics: tuple[bytes, ...]
    data: bytes
    removed: bool = False


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


def _hex(value: Any) -> str:
    """A 0x lower-case hex string from a JSON hex string or bytes."""
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def quantity(value: Any) -> int:
    """A JSON-RPC quantity as an int: a 0x hex string (the standard form), or a plain JSON
    number as some providers answer (the in-process chain)."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


def speaks_batches(w3: Web3) -> bool:
    """Whether `w3` talks to its node over HTTP, where `batch` sends JSON-RPC batches."""
    return _raw(w3) is not None


def error_message(reply: RPCResponse) -> str | None:
    """The node's words of a JSON-RPC reply's error (its message, with its data when that says
    more), or None when the reply carries no error."""
    error = reply.get("error")
    if error is None:
        return None
    message = _message(error)
    data = error.get("data") if isinstance(error, Mapping) else None
    if isinstance(data, str) and data and data not in message and not data.startswith("0x"):
        message = f"{message}: {data}"
    return message


def _raw(w3: Web3) -> HTTPProvider | None:
    provider = w3.provider
    return provider if isinstance(provider, HTTPProvider) else None


def _result(reply: RPCResponse, method: str) -> Any:
    """The reply's `result` (None for a JSON null). An error object raises `NodeRefused`; a
    reply with neither raises `BadResponseFormat`: it is not the node's "nothing" (no block, no
    logs), which its callers would act on (a block missing reads as a chain reset)."""
    if "error" in reply and reply["error"] is not None:
        raise NodeRefused(f"{method}: {_message(reply['error'])}", rpc_response=reply)
    if "result" not in reply:
        raise BadResponseFormat(f"{method}: a reply with neither result nor error: {reply!r:.200}")
    return reply["result"]


def _log(item: Mapping[str, Any]) -> RawLog:
    return RawLog(
        block_number=quantity(item["blockNumber"]),
        block_hash=_hex(item["blockHash"]),
        tx_hash=_hex(item["transactionHash"]),
        tx_index=quantity(item["transactionIndex"]),
        log_index=quantity(item["logIndex"]),
        topics=tuple(_bytes(t) for t in item["topics"]),
        data=_bytes(item["data"]),
        removed=bool(item.get("removed", False)),
    )


def receipt(item: Mapping[str, Any]) -> TxReceipt:
    """A transaction receipt from its JSON-RPC form (hex quantities and data), shaped as web3.py
    formats `eth_getTransactionReceipt` for the fields the service reads: numbers as int,
    hashes and data as `HexBytes`, addresses checksummed, and its logs as web3.py formats them,
    so that a contract's `events.X().process_receipt` decodes them."""

    def address(value: Any) -> Any:
        return None if value is None else Web3.to_checksum_address(value)

    logs = [
        AttributeDict({
            "address": address(log["address"]),
            "topics": [HexBytes(t) for t in log["topics"]],
            "data": HexBytes(log["data"]),
            "blockNumber": quantity(log["blockNumber"]),
            "blockHash": HexBytes(log["blockHash"]),
            "transactionHash": HexBytes(log["transactionHash"]),
            "transactionIndex": quantity(log["transactionIndex"]),
            "logIndex": quantity(log["logIndex"]),
            "removed": bool(log.get("removed", False)),
        })
        for log in item.get("logs") or []
    ]
    price = item.get("effectiveGasPrice")
    return cast(TxReceipt, AttributeDict({
        "transactionHash": HexBytes(item["transactionHash"]),
        "transactionIndex": quantity(item["transactionIndex"]),
        "blockHash": HexBytes(item["blockHash"]),
        "blockNumber": quantity(item["blockNumber"]),
        "from": address(item.get("from")),
        "to": address(item.get("to")),
        "contractAddress": address(item.get("contractAddress")),
        "status": quantity(item["status"]),
        "gasUsed": quantity(item["gasUsed"]),
        "cumulativeGasUsed": quantity(item["cumulativeGasUsed"]),
        "effectiveGasPrice": None if price is None else quantity(price),
        "logs": logs,
    }))


def receipts(w3: Web3, tx_hashes: Sequence[str]) -> dict[str, TxReceipt]:
    """The receipts of those of `tx_hashes` that have one (`receipt`), asked with
    `eth_getTransactionReceipt` in JSON-RPC batches (`batch`); through web3.py one at a time on
    a provider without batches. A reply with an error raises it (`NodeRefused`)."""
    if _raw(w3) is None:
        out: dict[str, TxReceipt] = {}
        for tx_hash in tx_hashes:
            try:
                out[tx_hash] = w3.eth.get_transaction_receipt(HexStr(tx_hash))
            except TransactionNotFound:
                continue
        return out
    replies = batch(w3, [("eth_getTransactionReceipt", [h]) for h in tx_hashes])
    found = {h: _result(r, "eth_getTransactionReceipt") for h, r in zip(tx_hashes, replies,
                                                                         strict=True)}
    return {h: receipt(item) for h, item in found.items()
            if isinstance(item, Mapping) and item.get("blockNumber") is not None}


def get_logs(
    w3: Web3,
    address: str,
    start: int,
    end: int,
    *,
    topics: Sequence[str | None] | None = None,
) -> list[RawLog]:
    """The contract's logs of blocks `start..end` (with `topics`, a JSON-RPC topic filter), in
    chain order, in one request. Any refusal of the node (range too large, too many results,
    timeout) is raised as is: `backend.chain.logs` pages a range within what the node accepts."""
    provider = _raw(w3)
    if provider is None:
        query: dict[str, Any] = {
            "address": Web3.to_checksum_address(address), "fromBlock": start, "toBlock": end
        }
        if topics is not None:
            query["topics"] = list(topics)
        logs = w3.eth.get_logs(query)  # type: ignore[arg-type]
        return [_log(log) for log in logs]
    flt: dict[str, Any] = {"address": address, "fromBlock": hex(start), "toBlock": hex(end)}
    if topics is not None:
        flt["topics"] = list(topics)
    items = _result(provider.make_request(RPCEndpoint("eth_getLogs"), [flt]), "eth_getLogs")
    return [_log(item) for item in items or []]


def _header(block: Mapping[str, Any]) -> BlockHeader:
    return BlockHeader(
        number=quantity(block["number"]),
        hash=_hex(block["hash"]),
        parent_hash=_hex(block["parentHash"]),
        timestamp=quantity(block["timestamp"]),
    )


def block_hash(w3: Web3, number: int) -> str | None:
    """The chain's hash of block `number` now, or None when the chain has no such block. Read
    as `block_headers` reads blocks (over HTTP the reply as it came: web3.py's formatting of a
    whole block cost more CPU than the request itself, and the API asks this before every
    POST); raises as `_result`."""
    if number < 0:
        return None
    found = _fetch(w3, [number])
    return found[0].hash if found else None


def block_headers(w3: Web3, numbers: Iterable[int]) -> dict[int, BlockHeader]:
    """Headers of the given blocks; raises `BlockMissing` (a `BlockNotFound`) if the chain lacks
    one of them."""
    wanted = sorted(set(numbers))
    found = {header.number: header for header in _fetch(w3, wanted)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise BlockMissing(f"blocks {missing[:5]} not found")
    return found


def _fetch(w3: Web3, numbers: Sequence[int]) -> list[BlockHeader]:
    if _raw(w3) is None:
        headers = []
        for n in numbers:
            try:
                headers.append(_header(w3.eth.get_block(n)))
            except BlockNotFound:
                continue
        return headers
    method = "eth_getBlockByNumber"
    replies = batch(w3, [(method, [hex(n), False]) for n in numbers])
    return [_header(block) for r in replies if (block := _result(r, method)) is not None]


def batch(w3: Web3, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[RPCResponse]:
    """One JSON-RPC reply per call of `calls` ((method, params) pairs), in order, asked over HTTP
    in batches of at most the node's batch size (`node_limits(w3).batch_size`).

    A batch the node refuses (one error object for the whole batch, fewer replies than calls, an
    HTTP 400 or 413, or items answered with a batch or response-size error) is split: the batch
    size is halved and remembered, and the calls not answered are asked again, down to single
    requests. A reply carrying any other error is returned as it is (the caller decides); a rate
    limit the provider did not already wait out is raised (`NodeRefused`, a transport failure by
    `is_rate_limited`). Other providers (the in-process chain) are asked one call at a time
    through web3's provider, whose errors are raised as web3 raises them."""
    provider = _raw(w3)
    if provider is None:
        return [w3.provider.make_request(RPCEndpoint(m), list(p)) for m, p in calls]
    limits = node_limits(w3)
    replies: dict[int, RPCResponse] = {}
    pending = list(range(len(calls)))
    while pending:
        part = pending[: limits.batch_size]
        if len(part) == 1:
            method, params = calls[part[0]]
            replies[part[0]] = provider.make_request(RPCEndpoint(method), list(params))
            pending = pending[1:]
            continue
        again, why = _send_batch(provider, calls, part, replies)
        if again:
            size = limits.batch_refused(len(part))
            logger.info(
                "node refused a batch of %d calls (%s); asking %d calls per batch from now on",
                len(part), why, size,
            )
        pending = again + pending[len(part) :]
    return [replies[i] for i in range(len(calls))]


def _send_batch(
    provider: HTTPProvider,
    calls: Sequence[tuple[str, Sequence[Any]]],
    part: list[int],
    replies: dict[int, RPCResponse],
) -> tuple[list[int], str]:
    """Sends the calls `part` as one batch and stores the replies it got; returns the calls to
    ask again (the node refused them as part of a batch) and why."""
    try:
        answer = provider.make_batch_request(
            [(RPCEndpoint(calls[i][0]), list(calls[i][1])) for i in part]
        )
    except requests.HTTPError as exc:
        status = None if exc.response is None else exc.response.status_code
        if status in _BATCH_REFUSAL_STATUS:
            return list(part), f"HTTP {status}"
        raise
    if not isinstance(answer, list):  # one error object: the batch as such was refused
        error = answer.get("error")
        if is_rate_limit_error(error):
            raise NodeRefused(f"batch of {len(part)} calls: {_message(error)}", rpc_response=answer)
        return list(part), _message(error)
    if len(answer) != len(part):  # geth answers a too-large batch with one error
        errors = [_message(r.get("error")) for r in answer if r.get("error") is not None]
        return list(part), errors[0] if errors else f"{len(answer)} replies"
    again: list[int] = []
    why = ""
    for i, reply in zip(part, answer, strict=True):
        error = reply.get("error")
        if error is not None and is_rate_limit_error(error):
            raise NodeRefused(f"{calls[i][0]}: {_message(error)}", rpc_response=reply)
        if error is not None and _refuses_batch(error):
            again.append(i)
            why = _message(error)
        else:
            replies[i] = reply
    return again, why


def _refuses_batch(error: Any) -> bool:
    """Whether a batch item's error refuses the batch rather than the call (a revert never
    does, whatever its reason says)."""
    message = _message(error)
    code = error.get("code") if isinstance(error, Mapping) else None
    if code == 3 or "revert" in message.lower():
        return False
    return bool(_BATCH_REFUSAL.search(message))


def _message(error: Any) -> str:
    if isinstance(error, Mapping):
        return str(error.get("message", error))
    return str(error)


def eth_calls(w3: Web3, to: str, datas: Sequence[str], block: int) -> list[bytes]:
    """The results of `eth_call`s to `to` at `block`, in JSON-RPC batches over HTTP (one request
    per call elsewhere). A reverted call raises."""
    provider = _raw(w3)
    if provider is None:
        target = Web3.to_checksum_address(to)
        return [
            bytes(w3.eth.call({"to": target, "data": HexStr(d)}, block_identifier=block))
            for d in datas
        ]
    replies = batch(w3, [("eth_call", [{"to": to, "data": d}, hex(block)]) for d in datas])
    return [_bytes(_result(r, "eth_call")) for r in replies]
