"""What an audit produces: named checks, each passed or failed with its evidence, and the money
timeline the reports draw. Shared by the verifier, the CLI, the API and the report renderers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: the named checks, in report order (a failing tamper test names exactly one of these)
CHECK_NAMES = (
    "bytecode",  # deployed runtime code == committed artifact's deployed bytecode
    "replay",  # events replayed in order rebuild the contract's views at the same block
    "signatures",  # each settlement by signature re-verified from the transaction input
    "payouts",  # each payout / reserve / refund equals the rules in EscrowCreated's params
    "documents",  # terms, evidence bundles, reviews, attachments re-hash to on-chain hashes
    "index",  # the database's indexed copy agrees with the chain
    "solvency",  # (--all) per token: balance >= credits + locked + reserved
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not checked (e.g. no database or API given), with the reason
    detail: str
    evidence: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TimelinePoint:
    """The escrow's money after one event: what is locked, released to the provider, refunded to
    the client (milestone remainders and breach refunds), reserved, and withdrawn (by block)."""

    block: int
    time: int
    event: str
    locked: int
    reserved: int
    released: int
    refunded: int


@dataclass(frozen=True)
class EscrowAudit:
    escrow_id: int
    chain_id: int
    contract: str
    block: int  # the block the views were compared at
    token: str
    symbol: str
    decimals: int
    checks: list[Check]
    timeline: list[TimelinePoint]
    events: int

    @property
    def consistent(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["consistent"] = self.consistent
        for point in body["timeline"]:
            for key in ("locked", "reserved", "released", "refunded"):
                point[key] = str(point[key])
        return body


@dataclass(frozen=True)
class AuditReport:
    """One run of `escrow audit`: one or many escrows, plus the contract-wide checks."""

    chain_id: int
    contract: str
    block: int
    escrows: list[EscrowAudit]
    contract_checks: list[Check]

    @property
    def consistent(self) -> bool:
        return all(c.ok is not False for c in self.contract_checks) and all(
            e.consistent for e in self.escrows
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "block": self.block,
            "consistent": self.consistent,
            "contract_checks": [asdict(c) for c in self.contract_checks],
            "escrows": [e.to_json() for e in self.escrows],
        }
