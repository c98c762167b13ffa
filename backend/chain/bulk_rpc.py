"""Bulk chain reads for the indexer: logs and block headers.

Over HTTP the JSON-RPC replies are parsed here directly (hex strings to ints and bytes) instead of
going through web3's per-field result formatters, which cost more than everything else the
indexer does per log (checksumming every log's address, wrapping every value). Block headers are
asked for in JSON-RPC batches. Other providers (the in-process chain) go through web3 as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import BlockNotFound
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from backend.chain.errors import BlockMissing, NodeRefused

#: how many block headers to ask for in one JSON-RPC batch
HEADER_BATCH = 500


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


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


def _raw(w3: Web3) -> HTTPProvider | None:
    provider = w3.provider
    return provider if isinstance(provider, HTTPProvider) else None


def _result(reply: RPCResponse, method: str) -> Any:
    if "error" in reply and reply["error"] is not None:
        error = reply["error"]
        message = error.get("message", error) if isinstance(error, Mapping) else error
        raise NodeRefused(f"{method}: {message}", rpc_response=reply)
    return reply.get("result")


def _log(item: Mapping[str, Any]) -> RawLog:
    return RawLog(
        block_number=_int(item["blockNumber"]),
        block_hash=_hex(item["blockHash"]),
        tx_hash=_hex(item["transactionHash"]),
        tx_index=_int(item["transactionIndex"]),
        log_index=_int(item["logIndex"]),
        topics=tuple(_bytes(t) for t in item["topics"]),
        data=_bytes(item["data"]),
        removed=bool(item.get("removed", False)),
    )


def get_logs(w3: Web3, address: str, start: int, end: int) -> list[RawLog]:
    """The contract's logs of blocks `start..end`, in chain order. Any refusal of the node
    (range too large, too many results, timeout) is raised as is."""
    provider = _raw(w3)
    if provider is None:
        logs = w3.eth.get_logs(
            {"address": Web3.to_checksum_address(address), "fromBlock": start, "toBlock": end}
        )
        return [_log(log) for log in logs]
    params = [{"address": address, "fromBlock": hex(start), "toBlock": hex(end)}]
    items = _result(provider.make_request(RPCEndpoint("eth_getLogs"), params), "eth_getLogs")
    return [_log(item) for item in items or []]


def _header(block: Mapping[str, Any]) -> BlockHeader:
    return BlockHeader(
        number=_int(block["number"]),
        hash=_hex(block["hash"]),
        parent_hash=_hex(block["parentHash"]),
        timestamp=_int(block["timestamp"]),
    )


def block_hash(w3: Web3, number: int) -> str | None:
    """The chain's hash of block `number` now, or None when the chain has no such block."""
    if number < 0:
        return None
    try:
        return _hex(w3.eth.get_block(number)["hash"])
    except BlockNotFound:
        return None


def block_headers(w3: Web3, numbers: Iterable[int]) -> dict[int, BlockHeader]:
    """Headers of the given blocks; raises `BlockMissing` (a `BlockNotFound`) if the chain lacks
    one of them."""
    wanted = sorted(set(numbers))
    found: dict[int, BlockHeader] = {}
    for i in range(0, len(wanted), HEADER_BATCH):
        for header in _fetch(w3, wanted[i : i + HEADER_BATCH]):
            found[header.number] = header
    missing = [n for n in wanted if n not in found]
    if missing:
        raise BlockMissing(f"blocks {missing[:5]} not found")
    return found


def _fetch(w3: Web3, numbers: Sequence[int]) -> list[BlockHeader]:
    provider = _raw(w3)
    if provider is None or len(numbers) == 1:
        headers = []
        for n in numbers:
            try:
                headers.append(_header(w3.eth.get_block(n)))
            except BlockNotFound:
                continue
        return headers
    method = RPCEndpoint("eth_getBlockByNumber")
    replies = provider.make_batch_request([(method, [hex(n), False]) for n in numbers])
    if not isinstance(replies, list):  # the whole batch was refused
        _result(replies, "eth_getBlockByNumber")
        raise NodeRefused(f"eth_getBlockByNumber batch refused: {replies}")
    return [_header(block) for r in replies if (block := _result(r, method)) is not None]


#: eth_calls per JSON-RPC batch
CALL_BATCH = 500


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
    method = RPCEndpoint("eth_call")
    out: list[bytes] = []
    for i in range(0, len(datas), CALL_BATCH):
        part = datas[i : i + CALL_BATCH]
        replies = provider.make_batch_request(
            [(method, [{"to": to, "data": d}, hex(block)]) for d in part]
        )
        if not isinstance(replies, list):
            _result(replies, "eth_call")
            raise NodeRefused(f"eth_call batch refused: {replies}")
        by_id = sorted(replies, key=lambda r: int(str(r.get("id") or 0)))
        out.extend(_bytes(_result(r, "eth_call")) for r in by_id)
    return out
