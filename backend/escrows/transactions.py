"""`GET /api/tx/{hash}`: where a wallet's transaction stands and what it did to escrows, read
from the node (not the index, so a wallet learns the id of the escrow it just created at once).

Only logs the escrow contract emitted count: they are decoded by the indexer's `LogDecoder` into
the form the index stores (`backend.chain.event_json`), every other contract's logs are left
out. A reverted transaction carries no reason in its receipt: it is replayed as a call from its
sender on the parent block, then on its own block (where an earlier transaction of the block may
have changed the state), as the senders do (`backend.outbox.sender.Sender.revert_reason`), and
its custom error named in words when the replay reverts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, cast

from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import TxParams

from backend.chain.artifacts import load_artifact
from backend.chain.client import CONTRACT_NAME
from backend.chain.errors import (
    ChainError,
    NodeUnavailable,
    TransactionFailed,
    UnknownEvent,
    from_node,
    is_transport_failure,
)
from backend.chain.log_decoder import LogDecoder
from backend.chain.transactions import REVERT_EXCEPTIONS, as_chain_error
from backend.errors import NotFoundError
from backend.inputs import parse_hash

#: what `status` may say: in the mempool, mined and succeeded, mined and reverted
TX_STATUSES = ("pending", "mined", "reverted")


@lru_cache(maxsize=1)
def _decoder() -> LogDecoder:
    return LogDecoder(load_artifact(CONTRACT_NAME).abi)


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def contract_events(logs: Sequence[Mapping[str, Any]], contract: str) -> list[dict[str, Any]]:
    """`[{event, escrow_id, args}]` of the logs `contract` emitted, in log order; a log of
    another contract, or one the contract's ABI does not declare, is left out."""
    decoder = _decoder()
    address = to_checksum_address(contract)
    events: list[dict[str, Any]] = []
    for log in sorted(logs, key=lambda entry: int(entry["logIndex"])):
        if to_checksum_address(log["address"]) != address:
            continue
        try:
            name, args = decoder.decode([bytes(t) for t in log["topics"]], bytes(log["data"]))
        except UnknownEvent:
            continue
        escrow_id = args.get("escrowId")
        events.append({
            "event": name,
            "escrow_id": None if escrow_id is None else int(escrow_id),
            "args": args,
        })
    return events


def escrow_ids_of(events: Sequence[Mapping[str, Any]]) -> list[int]:
    """The escrows the events name, each once, in order of first appearance."""
    return list(dict.fromkeys(e["escrow_id"] for e in events if e["escrow_id"] is not None))


def revert_error(w3: Web3, tx: Mapping[str, Any], block_number: int) -> str | None:
    """The reason a mined transaction reverted, in words (`EscrowInvalidStatus(escrowId=3,
    status=3, required=1)`), found by replaying it; None when no replay reverts with data
    (state pruned, or a revert without reason); 503 when the node does not answer."""
    call = cast(TxParams, {
        "from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"],
        "gas": tx["gas"],
    })
    for at in (block_number - 1, block_number):
        try:
            w3.eth.call(call, block_identifier=at)
        except REVERT_EXCEPTIONS as exc:
            error: ChainError = as_chain_error(exc)
            if isinstance(error, TransactionFailed) or error.message.endswith("(empty)"):
                return None
            return error.message
        except Exception as exc:
            if is_transport_failure(exc):
                raise NodeUnavailable("transaction replay", str(exc)) from exc
            return None  # state not available (pruned node): no reason to give
    return None


def transaction_report(w3: Web3, contract: str, tx_hash: object) -> dict[str, Any]:
    """`{tx_hash, status, block_number, from, to, escrow_ids, events, error}` of the
    transaction `tx_hash` (32-byte 0x hex; 400 otherwise). 404 when the node knows no such
    transaction; 503 when it does not answer. `status` is `pending` until the node has a
    receipt, then `mined` (status 1) or `reverted` (status 0, `error` the replayed reason)."""
    key = parse_hash("tx_hash", tx_hash)

    def read(reader: Any) -> Any:
        try:
            return from_node(f"transaction {key}", lambda: reader(key))
        except TransactionNotFound:
            return None

    tx = read(w3.eth.get_transaction)
    if tx is None:
        raise NotFoundError("transaction", key)
    receipt = None if tx.get("blockNumber") is None else read(w3.eth.get_transaction_receipt)
    to = tx.get("to")
    report: dict[str, Any] = {
        "tx_hash": key,
        "status": "pending",
        "block_number": None,
        "from": to_checksum_address(tx["from"]),
        "to": None if to is None else to_checksum_address(to),
        "escrow_ids": [],
        "events": [],
        "error": None,
    }
    if receipt is None:
        return report
    block_number = int(receipt["blockNumber"])
    events = contract_events(receipt["logs"], contract)
    report.update(
        block_number=block_number, escrow_ids=escrow_ids_of(events), events=events,
        status="mined" if int(receipt["status"]) == 1 else "reverted",
    )
    if report["status"] == "reverted":
        report["error"] = revert_error(w3, tx, block_number)
    return report
