"""What a sender offers per gas, and what it takes to replace a transaction.

On a chain whose blocks carry a base fee (EIP-1559) every transaction is type 2, with
`maxFeePerGas` = 2 * the next block's base fee + the node's suggested priority fee: it stays
minable while the base fee doubles. On a chain without a base fee it is a legacy transaction at
the node's gas price. Both are capped at `ESCROW_MAX_FEE_PER_GAS`.

A replacement (same nonce) must offer at least `BUMP` more on both caps, rounded up: geth's and
Hardhat's mempools refuse anything less ("replacement transaction underpriced"). It also offers
at least the node's current suggestion and a max fee of at least 2 * base fee + tip, and never
more than the ceiling: when the ceiling leaves no room for a 10% raise there is no replacement.

`Signed` reads the fields of stored signed bytes back (legacy, EIP-2930 and EIP-1559), so a
replacement carries exactly the call that was stored, with new fees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped]
from eth_utils import to_checksum_address
from web3 import Web3
from web3.types import BlockData

from backend.chain.errors import is_transport_failure

#: a replacement raises both fee caps by at least 11/10 (rounded up)
BUMP = (11, 10)
#: gas of a plain value transfer (a nonce filler)
TRANSFER_GAS = 21_000


def bumped(value: int) -> int:
    """`value` raised by 10%, rounded up (the smallest raise a node takes as a replacement)."""
    num, den = BUMP
    return -(-value * num // den)


@dataclass(frozen=True)
class Fees:
    """The fee caps of one transaction: EIP-1559 (`tip` set: `max_fee` is maxFeePerGas, `tip`
    maxPriorityFeePerGas) or legacy (`tip` None: `max_fee` is the gas price)."""

    max_fee: int
    tip: int | None

    @property
    def priority(self) -> int:
        """What the transaction pays a block producer per gas at most (a legacy one: its gas
        price), the value a node compares on replacement."""
        return self.max_fee if self.tip is None else self.tip

    def params(self) -> dict[str, int]:
        """The transaction fields."""
        if self.tip is None:
            return {"gasPrice": self.max_fee}
        return {"maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.tip}

    @classmethod
    def highest(cls, fees: list[Fees]) -> Fees:
        """Each cap at its highest over `fees` (a replacement must beat every earlier version)."""
        tips = [f.tip for f in fees if f.tip is not None]
        return cls(max(f.max_fee for f in fees), max(tips) if tips else None)


@dataclass(frozen=True)
class Market:
    """What the node says now: the next block's base fee (None: the chain has none) and the
    suggested priority fee (on a chain without a base fee: the gas price)."""

    base_fee: int | None
    tip: int
    #: the latest block's gas limit (no transaction may ask for more); None: not read
    gas_limit: int | None = None

    def under(self, fees: Fees) -> bool:
        """Whether a transaction offering `fees` cannot be in the next block: its max fee is
        below the next block's base fee."""
        return self.base_fee is not None and fees.max_fee < self.base_fee


def initial_fees(market: Market, ceiling: int) -> Fees:
    """The fees of a first signature: type 2 at 2 * base fee + tip when the chain has a base
    fee, else the gas price; at most `ceiling`."""
    if market.base_fee is None:
        return Fees(min(market.tip, ceiling), None)
    max_fee = min(2 * market.base_fee + market.tip, ceiling)
    return Fees(max_fee, min(market.tip, max_fee))


def replacement_fees(current: Fees, market: Market, ceiling: int) -> Fees | None:
    """The fees of a replacement for a transaction whose versions offered at most `current`:
    both caps raised by at least 10% (rounded up), the tip at least the node's suggestion, the
    max fee at least 2 * base fee + tip, all at most `ceiling`. None when the ceiling leaves no
    room for the 10% raise a node needs to take it."""
    if market.base_fee is None:
        price = max(bumped(current.max_fee), market.tip)
        price = min(price, ceiling)
        return Fees(price, None) if price >= bumped(current.max_fee) else None
    tip = max(bumped(current.priority), market.tip)
    max_fee = min(max(bumped(current.max_fee), 2 * market.base_fee + tip), ceiling)
    tip = min(tip, max_fee)
    if max_fee < bumped(current.max_fee) or tip < bumped(current.priority):
        return None
    return Fees(max_fee, tip)


def next_base_fee(w3: Web3, latest: BlockData) -> int:
    """The next block's base fee: the node's own figure (`eth_feeHistory` lists it after the
    latest block's), else computed from the latest block by the EIP-1559 rule."""
    try:
        history = w3.eth.fee_history(1, "latest", [])
        fees = list(history["baseFeePerGas"])
    except Exception as exc:
        if is_transport_failure(exc):
            raise
        fees = []
    if len(fees) >= 2:
        return int(fees[-1])
    base = int(latest["baseFeePerGas"])
    target = int(latest["gasLimit"]) // 2
    used = int(latest["gasUsed"])
    if target == 0 or used == target:
        return base
    if used > target:
        return base + max(base * (used - target) // target // 8, 1)
    return base - base * (target - used) // target // 8


def read_market(w3: Web3) -> Market:
    """The node's fee market now (three calls: the latest block, its fee history, the tip), and
    the latest block's gas limit."""
    latest = w3.eth.get_block("latest")
    gas_limit = int(latest["gasLimit"]) if latest.get("gasLimit") is not None else None
    if latest.get("baseFeePerGas") is None:
        return Market(None, int(w3.eth.gas_price), gas_limit)
    base = next_base_fee(w3, latest)
    try:
        tip = int(w3.eth.max_priority_fee)
    except Exception as exc:
        if is_transport_failure(exc):
            raise
        tip = max(int(w3.eth.gas_price) - int(latest["baseFeePerGas"]), 0)
    return Market(base, tip, gas_limit)


def _int(item: bytes) -> int:
    return int.from_bytes(item, "big")


@dataclass(frozen=True)
class Signed:
    """The fields of signed transaction bytes (legacy, EIP-2930 or EIP-1559; a sender never
    signs an access list, so none is read back)."""

    type: int
    chain_id: int | None
    nonce: int
    gas: int
    to: str | None
    value: int
    data: bytes
    fees: Fees

    @classmethod
    def decode(cls, raw: bytes) -> Signed:
        if raw[0] > 0x7F:  # legacy: [nonce, gasPrice, gas, to, value, data, v, r, s]
            f = rlp.decode(raw)
            v = _int(f[6])
            chain_id = (v - 35) // 2 if v >= 35 else None
            return cls(0, chain_id, _int(f[0]), _int(f[2]), cls._to(f[3]), _int(f[4]),
                       bytes(f[5]), Fees(_int(f[1]), None))
        f = rlp.decode(raw[1:])
        if raw[0] == 1:  # [chainId, nonce, gasPrice, gas, to, value, data, accessList, ...]
            return cls(1, _int(f[0]), _int(f[1]), _int(f[3]), cls._to(f[4]), _int(f[5]),
                       bytes(f[6]), Fees(_int(f[2]), None))
        if raw[0] == 2:  # [chainId, nonce, tip, maxFee, gas, to, value, data, accessList, ...]
            return cls(2, _int(f[0]), _int(f[1]), _int(f[4]), cls._to(f[5]), _int(f[6]),
                       bytes(f[7]), Fees(_int(f[3]), _int(f[2])))
        raise ValueError(f"transaction type {raw[0]} is not one a sender signs")

    @staticmethod
    def _to(item: bytes) -> str | None:
        return to_checksum_address(item) if item else None

    def with_fees(self, fees: Fees) -> dict[str, Any]:
        """The same call, nonce and gas with other fees, ready to sign (type 2 when `fees` are
        EIP-1559, else legacy)."""
        fields: dict[str, Any] = {
            "nonce": self.nonce, "gas": self.gas, "value": self.value, "data": self.data,
            **fees.params(),
        }
        if self.to is not None:
            fields["to"] = self.to
        if self.chain_id is not None:
            fields["chainId"] = self.chain_id
        return fields
