"""`backend/escrows/next_steps.py`: who must do what next, and until when, at a given chain time
(the windows of docs/interface.md section 1.3: inside means `now <= start + period`)."""

from __future__ import annotations

from dataclasses import replace

from backend.chain.types import BreachState, EscrowParams, MilestoneState, Status, Terms
from backend.escrows.next_steps import Step, next_steps
from backend.index.ledger import BreachLedger, EscrowLedger, MilestoneLedger

A, B, C, D = ("0x" + c * 40 for c in "abcd")
TERMS = Terms(
    rating_payout_bps=(0, 2_500, 5_000, 7_500, 10_000), breach_refund_bps=500,
    streak_refund_bps=1_000, incident_refund_bps=2_000, max_refund_bps=3_000,
    review_period=100, challenge_period=50, arbitration_period=200, delivery_deadline=10_000,
)
PARAMS = EscrowParams(client=A, provider=B, token="0x" + "0" * 40, oracle=C, arbiter=D,
                      terms_hash=b"\x01" * 32, milestone_amounts=(10, 20), terms=TERMS)


def ledger(status: Status, milestones: list[MilestoneLedger],
           breaches: list[BreachLedger] | None = None) -> EscrowLedger:
    return EscrowLedger(escrow_id=7, params=PARAMS, created_block=1, created_tx="0x01",
                        created_at=0, status=status, milestones=milestones,
                        breaches=breaches or [])


def ms(index: int, state: MilestoneState = MilestoneState.NONE, **kw: int) -> MilestoneLedger:
    return MilestoneLedger(index=index, amount=10, state=state, **kw)  # type: ignore[arg-type]


def test_a_proposed_escrow_waits_for_the_provider_to_accept_and_the_client_may_cancel() -> None:
    assert next_steps(ledger(Status.PROPOSED, [ms(0)]), now=5) == [
        Step("provider", "accept", deadline=10_000), Step("client", "cancel"),
    ]


def test_an_undelivered_milestone_is_the_providers_until_the_deadline_then_the_clients() -> None:
    led = ledger(Status.ACTIVE, [ms(0)])
    assert next_steps(led, now=10_000) == [Step("provider", "deliver", 0, deadline=10_000)]
    assert next_steps(led, now=10_001) == [Step("client", "reclaim", 0)]


def test_a_delivered_milestone_is_reviewed_inside_the_window_and_claimed_after_it() -> None:
    led = ledger(Status.ACTIVE, [ms(0, MilestoneState.DELIVERED, delivered_at=1_000),
                                 ms(1, MilestoneState.SETTLED)])
    assert next_steps(led, now=1_100) == [Step("client", "review", 0, deadline=1_100)]
    assert next_steps(led, now=1_101) == [Step("provider", "timeout", 0)]


def test_a_dispute_is_the_arbiters_inside_the_arbitration_window_then_a_split() -> None:
    led = ledger(Status.ACTIVE, [ms(0, MilestoneState.DISPUTED, disputed_at=500)])
    assert next_steps(led, now=700) == [Step("arbiter", "resolve-dispute", 0, deadline=700)]
    assert next_steps(led, now=701) == [Step("client", "stale-dispute", 0)]


def test_a_breach_report_is_challengeable_then_finalized_and_a_challenge_goes_to_the_arbiter(
) -> None:
    reported = BreachLedger(breach_id=0, kind=1, period=3, evidence_hash="0x", reserve=5,
                            reported_at=2_000, reported_tx="0x02")
    challenged = replace(reported, breach_id=1, state=BreachState.CHALLENGED, challenged_at=2_010)
    settled = replace(reported, breach_id=2, state=BreachState.FINALIZED)
    led = ledger(Status.ACTIVE, [ms(0, MilestoneState.SETTLED)], [reported, challenged, settled])
    assert next_steps(led, now=2_050) == [
        Step("provider", "challenge", breach_id=0, deadline=2_050),
        Step("oracle", "finalize", breach_id=0, opens_at=2_051),
        Step("arbiter", "resolve-breach", breach_id=1, deadline=2_210),
    ]
    assert next_steps(led, now=2_211) == [
        Step("oracle", "finalize", breach_id=0), Step("provider", "stale-breach", breach_id=1),
    ]


def test_without_an_arbiter_a_report_cannot_be_challenged_only_finalized() -> None:
    reported = BreachLedger(breach_id=0, kind=1, period=3, evidence_hash="0x", reserve=5,
                            reported_at=2_000, reported_tx="0x02")
    led = replace(ledger(Status.ACTIVE, [ms(0)], [reported]),
                  params=replace(PARAMS, arbiter="0x" + "0" * 40))
    assert [s.action for s in next_steps(led, now=2_010) if s.breach_id == 0] == ["finalize"]


def test_a_closed_escrow_has_nothing_left_to_do() -> None:
    assert next_steps(ledger(Status.CLOSED, [ms(0, MilestoneState.SETTLED)]), now=0) == []

