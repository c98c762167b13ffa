"""What a sender has spent for whom: the gas bookkeeping behind the senders' spend bounds
(`ESCROW_RELAY_MAX_SPEND_PER_ESCROW`, `ESCROW_RELAY_MAX_SPEND_PER_CLIENT`,
`ESCROW_ORACLE_MAX_SPEND_PER_ESCROW`, in wei).

Every transaction a sender signs records its gas limit and whom it is sent for
(`OutboxTransaction.escrow_id`, `on_behalf_of`: the client whose signed confirmation the relayer
sends), copied onto its replacements and nonce fillers; a mined or reverted one records the
receipt's `gasUsed` and `effectiveGasPrice`. The spend of a scope (an escrow, a client) counts
each nonce of its transactions once, whichever version it is:

- a version mined or reverted: `gas_used * gas_price`, what it cost (a revert costs too);
- else, while any version may still be mined (signed, sent, or replaced by a later one): the
  most any of them can cost, `gas_limit * max_fee_per_gas`;
- else nothing: superseded, refused or reorged versions never cost the sender anything.

A bound is checked when a row's transaction is signed: what the scope spent plus the new
transaction's worst case (gas limit * max fee per gas) must stay within it. Replacements raise
the max fee of a transaction already counted and are bounded by `ESCROW_MAX_FEE_PER_GAS`, not
checked again. Transactions stored before migration 0010 carry no scope and count for none."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import OutboxTransaction

#: statuses of a version that may still be mined
_LIVE = ("signed", "sent", "replaced")
#: statuses of a version whose receipt says what it cost
_PAID = ("mined", "reverted")


def worst_case(tx: OutboxTransaction) -> int:
    """The most `tx` can cost in wei: gas limit * max fee per gas (0 when either is unknown)."""
    if tx.gas_limit is None or tx.max_fee_per_gas is None:
        return 0
    return int(tx.gas_limit) * int(tx.max_fee_per_gas)


def paid(tx: OutboxTransaction) -> int:
    """What a mined or reverted `tx` cost in wei (its worst case when the receipt's figures were
    not recorded)."""
    if tx.gas_used is None or tx.gas_price is None:
        return worst_case(tx)
    return int(tx.gas_used) * int(tx.gas_price)


def spent(
    session: Session, chain_id: int, sender: str, *, escrow_id: int | None = None,
    on_behalf_of: str | None = None,
) -> int:
    """Wei `sender` has spent, or may still spend, on `chain_id` for the escrow `escrow_id` or
    the party `on_behalf_of` (exactly one of them), by the rule of the module docstring."""
    if (escrow_id is None) == (on_behalf_of is None):
        raise ValueError("give exactly one of escrow_id and on_behalf_of")
    scope = (
        OutboxTransaction.escrow_id == escrow_id if escrow_id is not None
        else OutboxTransaction.on_behalf_of == on_behalf_of
    )
    txs = session.scalars(
        select(OutboxTransaction).where(
            OutboxTransaction.chain_id == chain_id,
            OutboxTransaction.sender == sender,
            scope,
            OutboxTransaction.status.in_(_LIVE + _PAID),
        )
    )
    by_nonce: dict[tuple[int, int], list[OutboxTransaction]] = defaultdict(list)
    for tx in txs:
        by_nonce[(tx.root_id, tx.nonce)].append(tx)
    total = 0
    for versions in by_nonce.values():
        done = [paid(v) for v in versions if v.status in _PAID]
        total += max(done) if done else max(worst_case(v) for v in versions)
    return total
