"""Token metadata (decimals and symbol) read from the ERC-20 through eth_call and cached.

Both functions are optional in ERC-20: a token without them, one that answers `symbol()` with a
`bytes32` (MKR-style), or an address with no code at all still gets a `TokenInfo`, with `None`
where the token does not say. Answers (and definite non-answers) are cached for the life of the
`TokenMetadata` object; a transport failure is not cached, so the next call asks again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from web3 import Web3

from backend.chain.errors import NodeUnavailable, from_node
from backend.chain.transactions import REVERT_EXCEPTIONS
from backend.chain.types import ZERO_ADDRESS

DECIMALS_SELECTOR = "0x313ce567"  # decimals()
SYMBOL_SELECTOR = "0x95d89b41"  # symbol()
MAX_SYMBOL_LENGTH = 32


@dataclass(frozen=True)
class TokenInfo:
    address: ChecksumAddress
    symbol: str | None
    decimals: int | None

    @property
    def is_eth(self) -> bool:
        return self.address == ZERO_ADDRESS

    @property
    def label(self) -> str:
        """What a person reads: the symbol, or the address when the token has none."""
        return self.symbol or self.address

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "symbol": self.symbol, "decimals": self.decimals}

    def format_amount(self, amount: int) -> str:
        """`amount` (base units) as an exact decimal with the token's decimals ("1.500000")."""
        return format_units(amount, self.decimals or 0)


ETH = TokenInfo(ZERO_ADDRESS, "ETH", 18)


def format_units(amount: int, decimals: int) -> str:
    if decimals == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def decode_decimals(raw: bytes) -> int | None:
    if len(raw) < 32:
        return None
    value = int.from_bytes(raw[:32], "big")
    return value if value <= 255 else None


def decode_symbol(raw: bytes) -> str | None:
    """An ABI `string`, or a `bytes32` padded with zeros; `None` for anything else."""
    text: str | None = None
    if len(raw) == 32:
        text = raw.rstrip(b"\x00").decode("utf-8", errors="replace")
    elif len(raw) >= 64:
        try:
            (decoded,) = abi_decode(["string"], raw)
            text = str(decoded)
        except Exception:  # not an ABI string: a token we cannot read
            return None
    if text is None:
        return None
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    return text[:MAX_SYMBOL_LENGTH] or None


class TokenMetadata:
    """Decimals and symbol of the tokens of one chain, cached."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self._cache: dict[str, TokenInfo] = {ZERO_ADDRESS: ETH}
        self._lock = threading.Lock()

    def get(self, token: str) -> TokenInfo:
        address = to_checksum_address(token)
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        try:
            info = TokenInfo(
                address,
                decode_symbol(self._call(address, SYMBOL_SELECTOR)),
                decode_decimals(self._call(address, DECIMALS_SELECTOR)),
            )
        except NodeUnavailable:  # not cached: asked again next time
            return TokenInfo(address, None, None)
        with self._lock:
            self._cache[address] = info
        return info

    def _call(self, address: ChecksumAddress, selector: str) -> bytes:
        """The call's return data; empty when it reverts (the token has no such function);
        `NodeUnavailable` when the node does not answer."""
        try:
            return bytes(from_node(
                f"token {address}",
                lambda: self.w3.eth.call({"to": address, "data": selector}),  # type: ignore[typeddict-item]
            ))
        except REVERT_EXCEPTIONS:
            return b""
