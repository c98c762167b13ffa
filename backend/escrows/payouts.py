"""What settling a milestone pays each side (`docs/interface.md` section 1.4), as the contract's
`_settle` computes it: `base = amount * locked / nominal` (rounded down), or all of `locked` for
the last unsettled milestone (its amount is the whole `nominal`); the provider gets
`base * bps / 10000` (rounded down), the client the rest. Pure: amounts in base units (wei for
ETH) in, amounts out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.chain.types import BPS, EscrowParams, EscrowView


@dataclass(frozen=True)
class MilestonePayout:
    """What one settlement credits, in base units of the escrow's token."""

    to_provider: int
    to_client: int

    def to_json(self, token: dict[str, Any]) -> dict[str, Any]:
        """`{to_provider, to_client, token}`: amounts as decimal strings, `token` as
        `{address, symbol, decimals}`."""
        return {"to_provider": str(self.to_provider), "to_client": str(self.to_client),
                "token": token}


def settlement_split(amount: int, locked: int, nominal: int, provider_bps: int) -> MilestonePayout:
    """The contract's split of a milestone of `amount` settled at `provider_bps` while the escrow
    holds `locked` for unsettled milestones whose amounts sum to `nominal` (all base units)."""
    base = locked if amount == nominal else amount * locked // nominal
    to_provider = base * provider_bps // BPS
    return MilestonePayout(to_provider, base - to_provider)


def milestone_payout(
    params: EscrowParams, view: EscrowView, milestone: int, rating: int
) -> MilestonePayout:
    """What confirming unsettled `milestone` with `rating` (1..5) pays now: the escrow's
    `ratingPayoutBps[rating - 1]` applied to the contract's current `locked` and `nominal`
    (`getEscrow`), so breach reserves already taken out of `locked` are counted. A later breach
    report before the confirmation lands lowers it."""
    amount = params.milestone_amounts[milestone]
    return settlement_split(amount, view.locked, view.nominal, params.terms.payout_bps(rating))
