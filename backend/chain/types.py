"""Python mirrors of the contract's structs and enums (`docs/interface.md`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address

from backend.errors import MalformedInputError

ZERO_ADDRESS: ChecksumAddress = to_checksum_address("0x" + "00" * 20)


@lru_cache(maxsize=4096)
def _checksummed(address: str) -> ChecksumAddress:
    return to_checksum_address(address)


def checksummed(address: Any) -> ChecksumAddress:
    """`to_checksum_address`, remembered for the last few thousand text addresses: an escrow's
    parameters are read back from the index (and from its `EscrowCreated` for the ledger) on
    every confirmation, and each checksum is a keccak."""
    return _checksummed(address) if isinstance(address, str) else to_checksum_address(address)


#: the largest period number: periods are `uint32` on the chain (`reportBreach`'s `period`,
#: `BreachReported.period`)
MAX_PERIOD = 2**32 - 1
ZERO_HASH = b"\x00" * 32
BPS = 10_000
MAX_MILESTONES = 64
MAX_TOTAL = 2**112


class Status(IntEnum):
    NONE = 0
    PROPOSED = 1
    ACTIVE = 2
    CLOSED = 3


class MilestoneState(IntEnum):
    NONE = 0
    DELIVERED = 1
    DISPUTED = 2
    SETTLED = 3


class BreachState(IntEnum):
    NONE = 0
    REPORTED = 1
    CHALLENGED = 2
    FINALIZED = 3
    UPHELD = 4
    REJECTED = 5
    STALE_SPLIT = 6


class BreachKind(IntEnum):
    KPI_BELOW_STANDARD = 1
    CONSECUTIVE_UNDERPERFORMANCE = 2
    MAJOR_INCIDENT = 3


class SettledHow(IntEnum):
    """`how` of `MilestoneSettled`."""

    CONFIRMED = 1
    SIGNED = 2
    TIMEOUT = 3
    DISPUTE_RESOLVED = 4
    STALE_DISPUTE = 5
    RECLAIMED = 6


class BreachOutcome(IntEnum):
    """`outcome` of `BreachSettled`."""

    FINALIZED = 1
    UPHELD = 2
    REJECTED = 3
    STALE_SPLIT = 4


def _as_bytes32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise MalformedInputError("bytes32", f"expected 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class Terms:
    """Refund rules and time windows (the contract's `Terms`)."""

    rating_payout_bps: tuple[int, int, int, int, int]
    breach_refund_bps: int
    streak_refund_bps: int
    incident_refund_bps: int
    max_refund_bps: int
    review_period: int
    challenge_period: int
    arbitration_period: int
    delivery_deadline: int

    def to_abi(self) -> tuple[Any, ...]:
        return (
            list(self.rating_payout_bps),
            self.breach_refund_bps,
            self.streak_refund_bps,
            self.incident_refund_bps,
            self.max_refund_bps,
            self.review_period,
            self.challenge_period,
            self.arbitration_period,
            self.delivery_deadline,
        )

    @classmethod
    def from_abi(cls, value: Sequence[Any] | Mapping[str, Any]) -> Terms:
        v = list(value.values()) if isinstance(value, Mapping) else list(value)
        table = tuple(int(x) for x in v[0])
        if len(table) != 5:
            raise MalformedInputError("ratingPayoutBps", "must have 5 entries")
        return cls(
            rating_payout_bps=(table[0], table[1], table[2], table[3], table[4]),
            breach_refund_bps=int(v[1]),
            streak_refund_bps=int(v[2]),
            incident_refund_bps=int(v[3]),
            max_refund_bps=int(v[4]),
            review_period=int(v[5]),
            challenge_period=int(v[6]),
            arbitration_period=int(v[7]),
            delivery_deadline=int(v[8]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ratingPayoutBps": list(self.rating_payout_bps),
            "breachRefundBps": self.breach_refund_bps,
            "streakRefundBps": self.streak_refund_bps,
            "incidentRefundBps": self.incident_refund_bps,
            "maxRefundBps": self.max_refund_bps,
            "reviewPeriod": self.review_period,
            "challengePeriod": self.challenge_period,
            "arbitrationPeriod": self.arbitration_period,
            "deliveryDeadline": self.delivery_deadline,
        }

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> Terms:
        table = tuple(int(x) for x in v["ratingPayoutBps"])
        if len(table) != 5:
            raise MalformedInputError("ratingPayoutBps", "must have 5 entries")
        return cls(
            rating_payout_bps=(table[0], table[1], table[2], table[3], table[4]),
            breach_refund_bps=int(v["breachRefundBps"]),
            streak_refund_bps=int(v["streakRefundBps"]),
            incident_refund_bps=int(v["incidentRefundBps"]),
            max_refund_bps=int(v["maxRefundBps"]),
            review_period=int(v["reviewPeriod"]),
            challenge_period=int(v["challengePeriod"]),
            arbitration_period=int(v["arbitrationPeriod"]),
            delivery_deadline=int(v["deliveryDeadline"]),
        )

    def payout_bps(self, rating: int) -> int:
        return self.rating_payout_bps[rating - 1]

    def kind_bps(self, kind: int) -> int:
        return {
            1: self.breach_refund_bps,
            2: self.streak_refund_bps,
            3: self.incident_refund_bps,
        }[kind]


@dataclass(frozen=True)
class EscrowParams:
    """Everything fixed at an escrow's creation (the contract's `EscrowParams`)."""

    client: ChecksumAddress
    provider: ChecksumAddress
    token: ChecksumAddress
    oracle: ChecksumAddress
    arbiter: ChecksumAddress
    terms_hash: bytes
    milestone_amounts: tuple[int, ...]
    terms: Terms = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("client", "provider", "token", "oracle", "arbiter"):
            object.__setattr__(self, name, checksummed(getattr(self, name)))
        object.__setattr__(self, "terms_hash", _as_bytes32(self.terms_hash))
        object.__setattr__(self, "milestone_amounts", tuple(int(a) for a in self.milestone_amounts))

    @property
    def total(self) -> int:
        return sum(self.milestone_amounts)

    @property
    def is_eth(self) -> bool:
        return self.token == ZERO_ADDRESS

    def to_abi(self) -> tuple[Any, ...]:
        return (
            self.client,
            self.provider,
            self.token,
            self.oracle,
            self.arbiter,
            self.terms_hash,
            list(self.milestone_amounts),
            self.terms.to_abi(),
        )

    @classmethod
    def from_abi(cls, value: Sequence[Any] | Mapping[str, Any]) -> EscrowParams:
        v = list(value.values()) if isinstance(value, Mapping) else list(value)
        return cls(
            client=v[0],
            provider=v[1],
            token=v[2],
            oracle=v[3],
            arbiter=v[4],
            terms_hash=v[5],
            milestone_amounts=tuple(int(a) for a in v[6]),
            terms=Terms.from_abi(v[7]),
        )

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> EscrowParams:
        """Inverse of `to_json`."""
        return cls(
            client=v["client"],
            provider=v["provider"],
            token=v["token"],
            oracle=v["oracle"],
            arbiter=v["arbiter"],
            terms_hash=v["termsHash"],
            milestone_amounts=tuple(int(a) for a in v["milestoneAmounts"]),
            terms=Terms.from_json(v["terms"]),
        )

    @classmethod
    def from_event(cls, value: Any) -> EscrowParams:
        """From an `EscrowCreated` argument: the ABI tuple, or the JSON form (`to_json`)."""
        if (
            isinstance(value, Mapping)
            and "termsHash" in value
            and isinstance(value.get("terms"), Mapping)
            and "ratingPayoutBps" in value["terms"]
        ):
            return cls.from_json(value)
        return cls.from_abi(value)

    def to_json(self) -> dict[str, Any]:
        """JSON form used by the API: uint256 values as decimal strings, hashes as 0x hex."""
        return {
            "client": self.client,
            "provider": self.provider,
            "token": self.token,
            "oracle": self.oracle,
            "arbiter": self.arbiter,
            "termsHash": "0x" + self.terms_hash.hex(),
            "milestoneAmounts": [str(a) for a in self.milestone_amounts],
            "terms": self.terms.to_json(),
        }


@dataclass(frozen=True)
class EscrowView:
    """What `getEscrow` returns."""

    status: Status
    locked: int
    nominal: int
    reserved: int
    refunded: int
    milestone_count: int
    settled_count: int
    breach_count: int

    @classmethod
    def from_abi(cls, v: Sequence[Any]) -> EscrowView:
        return cls(Status(v[0]), *(int(x) for x in v[1:8]))


@dataclass(frozen=True)
class MilestoneView:
    state: MilestoneState
    since: int


@dataclass(frozen=True)
class BreachView:
    """What `getBreach` returns."""

    state: BreachState
    kind: int
    period: int
    reported_at: int
    challenged_at: int
    reserve: int

    @classmethod
    def from_abi(cls, v: Sequence[Any]) -> BreachView:
        return cls(BreachState(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]), int(v[5]))
