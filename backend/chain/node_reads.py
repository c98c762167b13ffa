"""Reads from the node on behalf of an API request: a node that does not answer becomes a 503
`UnavailableError` instead of an unexplained 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from web3 import Web3
from web3.exceptions import Web3Exception

from backend.errors import UnavailableError

T = TypeVar("T")


def from_node(what: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except (OSError, Web3Exception) as exc:  # requests' errors are OSErrors
        raise UnavailableError("node", f"{what}: {exc}") from exc


def latest_block_time(w3: Web3) -> int:
    return from_node("latest block", lambda: int(w3.eth.get_block("latest")["timestamp"]))


def has_code(w3: Web3, address: str) -> bool:
    return from_node(
        f"code of {address}",
        lambda: len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0,
    )
