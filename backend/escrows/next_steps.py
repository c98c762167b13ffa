"""What each party of an escrow must do next, with the deadline the contract measures it by
(`docs/interface.md` sections 1.2 and 1.3): the dashboard's "to do" and the escrow page's
countdowns. Pure: a folded ledger and a time in, steps out."""

from __future__ import annotations

from dataclasses import dataclass

from backend.chain.types import ZERO_ADDRESS, BreachState, MilestoneState, Status
from backend.index.ledger import EscrowLedger

ROLES = ("client", "provider", "arbiter", "oracle")


@dataclass(frozen=True)
class Step:
    """One thing a party may or must do.

    `action` names the ready transaction or page (`accept`, `deliver`, `review`, `reclaim`,
    `timeout`, `resolve-dispute`, `stale-dispute`, `challenge`, `finalize`, `resolve-breach`,
    `cancel`); `milestone` or `breach_id` says on what; `deadline` (unix seconds, chain time) is
    the last moment it can be done, None when nothing ends it; `opens_at` the first moment it
    can be done when that is later than now."""

    role: str
    action: str
    milestone: int | None = None
    breach_id: int | None = None
    deadline: int | None = None
    opens_at: int | None = None


def window_ends(led: EscrowLedger) -> dict[str, dict[int, int]]:
    """The last second of each open window (chain time, inclusive: `docs/interface.md` 1.3):
    `review` per delivered milestone, `dispute` (arbitration) per disputed milestone,
    `challenge` per reported breach, `arbitration` per challenged breach."""
    t = led.params.terms
    return {
        "review": {m.index: m.delivered_at + t.review_period for m in led.milestones
                   if m.state == MilestoneState.DELIVERED and m.delivered_at is not None},
        "dispute": {m.index: m.disputed_at + t.arbitration_period for m in led.milestones
                    if m.state == MilestoneState.DISPUTED and m.disputed_at is not None},
        "challenge": {b.breach_id: b.reported_at + t.challenge_period for b in led.breaches
                      if b.state == BreachState.REPORTED},
        "arbitration": {b.breach_id: b.challenged_at + t.arbitration_period
                        for b in led.breaches
                        if b.state == BreachState.CHALLENGED and b.challenged_at is not None},
    }


def next_steps(led: EscrowLedger, now: int) -> list[Step]:
    """Every step open to some party of the escrow at chain time `now`, in the order the
    parties would meet them (milestones first, then breach reports)."""
    terms = led.params.terms
    if led.status == Status.PROPOSED:
        return [Step("provider", "accept", deadline=terms.delivery_deadline),
                Step("client", "cancel")]
    if led.status != Status.ACTIVE:
        return []
    steps: list[Step] = []
    has_arbiter = led.params.arbiter != ZERO_ADDRESS
    delivery_over = now > terms.delivery_deadline
    ends = window_ends(led)
    for m in led.milestones:
        if m.state == MilestoneState.NONE:
            if delivery_over:
                steps.append(Step("client", "reclaim", milestone=m.index))
            else:
                steps.append(Step("provider", "deliver", milestone=m.index,
                                  deadline=terms.delivery_deadline))
        elif (end := ends["review"].get(m.index)) is not None:
            if now <= end:
                steps.append(Step("client", "review", milestone=m.index, deadline=end))
            else:
                steps.append(Step("provider", "timeout", milestone=m.index))
        elif (end := ends["dispute"].get(m.index)) is not None:
            if now <= end:
                steps.append(Step("arbiter", "resolve-dispute", milestone=m.index, deadline=end))
            else:
                steps.append(Step("client", "stale-dispute", milestone=m.index))
    for b in led.breaches:
        if (end := ends["challenge"].get(b.breach_id)) is not None:
            if now <= end:
                if has_arbiter:  # without one the contract refuses (`EscrowNoArbiter`)
                    steps.append(
                        Step("provider", "challenge", breach_id=b.breach_id, deadline=end)
                    )
                steps.append(Step("oracle", "finalize", breach_id=b.breach_id, opens_at=end + 1))
            else:
                steps.append(Step("oracle", "finalize", breach_id=b.breach_id))
        elif (end := ends["arbitration"].get(b.breach_id)) is not None:
            if now <= end:
                steps.append(Step("arbiter", "resolve-breach", breach_id=b.breach_id,
                                  deadline=end))
            else:
                steps.append(Step("provider", "stale-breach", breach_id=b.breach_id))
    return steps
