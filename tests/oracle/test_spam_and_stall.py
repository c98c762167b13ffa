"""The oracle cannot be made to spam or stall. Observed: terms with
`period_seconds: 1` and `missing_data: "breach"` gave 129,598 findings per escrow-day, each a
paid `reportBreach`, even after the refund cap was used up, and every pass evaluated every
period since acceptance. Now: such terms stored before the minimum are not evaluated (the reason
recorded, no finding), a report that would reserve nothing is recorded `off_chain` with its
evidence and never sent, and a pass evaluates only the periods that can have changed. On the
in-process chain, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import to_checksum_address
from sqlalchemy import select

from backend.canonical import terms_hash
from backend.chain.types import EscrowParams, EscrowView, Status, Terms
from backend.db.models import BreachSubmission, EscrowRow, EvidenceBundle
from backend.oracle.evaluation import Sample, evaluate
from backend.oracle.findings import EvaluationState, evaluation_failure, evaluator
from backend.oracle.outbox import reserve_bounds
from backend.oracle.terms import parse_terms
from backend.oracle.terms_store import store_terms
from backend.oracle.worker import Oracle
from backend.outbox.spend import spent
from tests.api.support import Api
from tests.oracle.test_findings import queued, store_samples
from tests.support import CHALLENGE, DAY, ETH

#: the observed terms: a period of one second, a missing KPI is a breach
SPAM_DOC: dict[str, Any] = {
    "version": 1,
    "title": "One report per second",
    "period_seconds": 1,
    "grace_seconds": 0,
    "missing_data": "breach",
    "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
}
HOUR = 3_600
#: hourly periods, every missing hour a breach, three in a row a streak
HOURLY_DOC: dict[str, Any] = {**SPAM_DOC, "title": "Hourly", "period_seconds": HOUR,
                              "consecutive_periods": 3}


def escrow_with(api: Api, doc: dict[str, Any], **terms: Any) -> tuple[int, int]:
    """An accepted escrow of 1 + 1 ETH committed to `doc` (stored as it is, as before the
    minimum period), indexed; returns (id, accepted_at)."""
    env = api.env
    params = env.params((ETH, ETH), terms_hash=terms_hash(doc), terms=env.terms(**terms))
    escrow_id = env.create_active(params)
    with api.services.sessions() as session, session.begin():
        store_terms(session, doc, min_period_seconds=1)
    api.index()
    with api.services.sessions() as session:
        row = session.get(EscrowRow, (api.services.chain_id, escrow_id))
        assert row is not None and row.accepted_at is not None
        return escrow_id, row.accepted_at


def worker(api: Api, state: EvaluationState | None = None) -> Oracle:
    services, account = api.services, api.env.parties.oracle
    return Oracle(services, account, evaluate=evaluator(services, account.address, state))


def statuses(api: Api, escrow_id: int) -> list[tuple[int, int, str]]:
    with api.services.sessions() as session:
        rows = session.scalars(select(BreachSubmission).where(
            BreachSubmission.escrow_id == escrow_id).order_by(BreachSubmission.period,
                                                               BreachSubmission.kind))
        return [(r.kind, r.period, r.status) for r in rows]


def oracle_nonce(api: Api) -> int:
    return int(api.env.w3.eth.get_transaction_count(api.env.oracle))


def test_a_stored_one_second_escrow_a_day_old_makes_no_finding_and_says_why(api: Api) -> None:
    escrow_id, t0 = escrow_with(api, SPAM_DOC)
    store_samples(api, escrow_id, [("uptime", 90.0, t0 + 1)])
    api.env.advance(DAY)
    nonce = oracle_nonce(api)

    report = worker(api).run_until_idle()

    assert queued(api, escrow_id) == []  # was 129,598 findings per escrow-day
    assert (report.signed, oracle_nonce(api)) == (0, nonce)
    with api.services.sessions() as session:
        failure = evaluation_failure(session, api.services.chain_id, escrow_id)
    assert failure is not None
    assert failure.error == (
        "period_seconds 1 is below the minimum period of 3600 seconds "
        "(ESCROW_MIN_PERIOD_SECONDS): the terms are not evaluated")
    breaches = api.ok("GET", f"/api/escrows/{escrow_id}/breaches")
    assert breaches["breaches"] == []
    assert breaches["evaluation_error"]["error"] == failure.error


def test_a_short_period_escrow_is_not_read_again_until_its_samples_change(
    api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    escrow_id, t0 = escrow_with(api, SPAM_DOC)
    store_samples(api, escrow_id, [("uptime", 90.0, t0 + 1)])
    state = EvaluationState()
    oracle = worker(api, state)
    oracle.enqueue()
    read: list[int] = []
    monkeypatch.setattr("backend.oracle.findings.escrow_terms",
                        lambda session, row: read.append(row.escrow_id))
    api.env.advance(HOUR)
    oracle.enqueue()
    oracle.enqueue()
    assert (read, state.periods_evaluated) == ([], 0)


def test_a_report_that_would_reserve_nothing_is_recorded_off_chain_and_never_sent(
    api: Api,
) -> None:
    # the refund cap (maxRefundBps 500) is held by the first report (breachRefundBps 500)
    escrow_id, t0 = escrow_with(api, HOURLY_DOC, breach_refund_bps=500, streak_refund_bps=500,
                                max_refund_bps=500)
    store_samples(api, escrow_id, [("uptime", 100.0, t0 + 1)])  # period 0 passes
    api.env.advance(3 * HOUR + 10)  # periods 1 and 2 closed, missing: each a breach
    nonce = oracle_nonce(api)

    worker(api).run_until_idle()

    # the first report's reserve comes back if it is challenged and decided for the provider:
    # the second waits (recorded off-chain then, it would lose the client a refund owed)
    assert statuses(api, escrow_id) == [(1, 1, "mined"), (1, 2, "pending")]
    assert oracle_nonce(api) == nonce + 1
    api.env.advance(CHALLENGE + 10)  # unchallenged: finalized, the cap is used up by a refund
    worker(api).run_until_idle()
    worker(api).run_until_idle()

    found = {(kind, period): status for kind, period, status in statuses(api, escrow_id)}
    assert found[(1, 1)] == "mined" and found[(1, 2)] == "off_chain"
    assert set(found.values()) == {"mined", "off_chain"}
    assert oracle_nonce(api) == nonce + 2  # the report and its finalization, nothing else
    with api.services.sessions() as session:
        off = session.scalar(select(BreachSubmission).where(
            BreachSubmission.escrow_id == escrow_id, BreachSubmission.period == 2))
        assert off is not None and off.report_tx_id is None
        assert off.error is not None and "refund cap" in off.error
        bundle = session.get(EvidenceBundle, off.evidence_hash)
        assert bundle is not None and (bundle.kind, bundle.period) == (1, 2)
    body = api.ok("GET", f"/api/escrows/{escrow_id}/breaches")
    recorded = {(b["kind"], b["period"]): b for b in body["breaches"]}[(1, 2)]
    assert (recorded["on_chain"], recorded["submission"]["status"]) == (False, "off_chain")
    assert recorded["evidence"]["period"] == 2
    assert recorded["note"].startswith("recorded off-chain with its evidence, not sent")


def test_a_refund_that_rounds_to_zero_is_recorded_off_chain(api: Api) -> None:
    env = api.env
    params = env.params((1, 1), terms_hash=terms_hash(HOURLY_DOC))  # 2 wei: 5% is 0
    escrow_id = env.create_active(params)
    with api.services.sessions() as session, session.begin():
        store_terms(session, HOURLY_DOC)
    api.index()
    with api.services.sessions() as session:
        row = session.get(EscrowRow, (api.services.chain_id, escrow_id))
        assert row is not None and row.accepted_at is not None
        t0 = row.accepted_at
    store_samples(api, escrow_id, [("uptime", 90.0, t0 + 1)])
    env.advance(HOUR + 10)
    nonce = oracle_nonce(api)

    worker(api).run_until_idle()

    assert statuses(api, escrow_id) == [(1, 0, "off_chain")]
    assert oracle_nonce(api) == nonce
    with api.services.sessions() as session:
        error = session.scalars(select(BreachSubmission.error).where(
            BreachSubmission.escrow_id == escrow_id)).one()
    assert error is not None and "rounds to 0" in error


def test_the_reserve_bounds_count_the_reports_in_flight() -> None:
    terms = Terms((0, 0, 0, 0, 10_000), 500, 1_000, 2_000, 1_000, 1, 1, 0, 0)
    client, provider, oracle, none = (to_checksum_address(f"0x{n * 20}")
                                      for n in ("11", "22", "33", "00"))
    params = EscrowParams(client, provider, none, oracle, none, b"\0" * 32, (10_000,), terms)
    view = EscrowView(Status.ACTIVE, 10_000, 10_000, 0, 0, 1, 0, 0)
    assert reserve_bounds(params, view, 1) == (500, 500)
    # one kind-2 report in flight may take the whole cap (1,000): the kind-1 report may get 0
    assert reserve_bounds(params, view, 1, [2]) == (0, 500)
    used = EscrowView(Status.ACTIVE, 9_000, 10_000, 1_000, 0, 1, 0, 1)
    assert reserve_bounds(params, used, 1) == (0, 0)
    nothing_locked = EscrowView(Status.ACTIVE, 0, 0, 0, 0, 1, 1, 0)
    assert reserve_bounds(params, nothing_locked, 3) == (0, 0)


def test_a_pass_evaluates_only_the_periods_that_can_have_changed(api: Api) -> None:
    escrow_id, t0 = escrow_with(api, {**HOURLY_DOC, "missing_data": "ignore"})
    # 200 hours of passing samples, then a failing hour at a time
    store_samples(api, escrow_id, [("uptime", 100.0, t0 + h * HOUR + 5) for h in range(200)])
    api.env.advance(200 * HOUR + 10)
    state = EvaluationState()
    oracle = worker(api, state)
    oracle.enqueue()
    first_pass = state.periods_evaluated
    assert first_pass == 201  # periods 0..200 since acceptance, once

    store_samples(api, escrow_id, [("uptime", 90.0, t0 + 200 * HOUR + 20)])
    api.env.advance(HOUR)
    oracle.enqueue()
    assert state.periods_evaluated - first_pass == 2  # period 200 (closed now) and 201
    assert queued(api, escrow_id) == [(1, 200)]

    # a late sample of an old period: evaluated from that period on, not from 0
    before = state.periods_evaluated
    store_samples(api, escrow_id, [("uptime", 10.0, t0 + 150 * HOUR + 30)])
    oracle.enqueue()
    assert state.periods_evaluated - before == 202 - 150
    assert queued(api, escrow_id) == [(1, 150), (1, 200)]


def test_incremental_passes_find_the_streaks_a_full_evaluation_finds(api: Api) -> None:
    escrow_id, t0 = escrow_with(api, {**HOURLY_DOC, "missing_data": "ignore"})
    values = [90.0, 90.0, 100.0, 90.0, 90.0, 90.0, 90.0, 90.0, 90.0, 90.0, 100.0, 90.0]
    state = EvaluationState()
    oracle = worker(api, state)
    for hour, value in enumerate(values):
        store_samples(api, escrow_id, [("uptime", value, t0 + hour * HOUR + 5)])
        api.env.advance(HOUR)
        oracle.enqueue()
    now = api.env.w3.eth.get_block("latest")["timestamp"]
    samples = [Sample("uptime", v, t0 + h * HOUR + 5) for h, v in enumerate(values)]
    full = evaluate(parse_terms(HOURLY_DOC), t0, now, samples).findings
    assert queued(api, escrow_id) == sorted((f.kind, f.period) for f in full)
    assert (2, 5) in queued(api, escrow_id) and (2, 8) in queued(api, escrow_id)
    # at most the streak in progress, the period just closed and the open one per pass, not
    # every period since acceptance (2 + 3 + ... + 13 = 90)
    assert state.periods_evaluated <= 4 * len(values)


@pytest.mark.parametrize("remembering", [False, True])
def test_an_escrow_whose_monitoring_never_posts_is_reported_when_missing_data_is_a_breach(
    api: Api, remembering: bool
) -> None:
    """Observed: with `missing_data: breach` and not one sample, `/kpis` showed closed periods
    failing but the oracle never looked at the escrow (it only read escrows with samples)."""
    silent, _ = escrow_with(api, HOURLY_DOC)
    ignoring, _ = escrow_with(api, {**HOURLY_DOC, "title": "Ignoring",
                                    "missing_data": "ignore"})
    api.env.advance(HOUR + 10)  # period 0 closed without a sample
    state = EvaluationState() if remembering else None

    worker(api, state).run_until_idle()

    assert statuses(api, silent) == [(1, 0, "mined")]
    assert statuses(api, ignoring) == []  # missing data raises nothing there
    api.env.advance(HOUR)  # period 1 closed too: the next pass reports it, once
    worker(api, state).run_until_idle()
    worker(api, state).run_until_idle()
    assert statuses(api, silent) == [(1, 0, "mined"), (1, 1, "mined")]


def test_the_oracle_stops_at_the_spend_bound_of_an_escrow(api: Api) -> None:
    """Observed: terms refunding 1 wei per failed hour of a 10,000-wei escrow made the oracle
    pay ~75k gas a report, 24 reports a day, up to the refund cap; an operator bounds that."""
    escrow_id, _ = escrow_with(api, HOURLY_DOC, breach_refund_bps=1, max_refund_bps=10_000)
    api.env.advance(HOUR + 10)
    worker(api).run_until_idle()  # period 0: one report, what it cost is the bound
    assert statuses(api, escrow_id) == [(1, 0, "mined")]
    with api.services.sessions() as session:
        cost = spent(session, api.services.chain_id, "oracle", escrow_id=escrow_id)
    assert cost > 0
    api.services.settings = api.services.settings.model_copy(
        update={"oracle_max_spend_per_escrow": cost + 1}
    )
    nonce = oracle_nonce(api)
    api.env.advance(HOUR)

    worker(api).run_until_idle()

    assert statuses(api, escrow_id) == [(1, 0, "mined"), (1, 1, "failed")]
    assert oracle_nonce(api) == nonce  # nothing signed over the bound
    with api.services.sessions() as session:
        row = session.scalar(select(BreachSubmission).where(
            BreachSubmission.escrow_id == escrow_id, BreachSubmission.period == 1))
        assert row is not None and row.error is not None
        assert "ESCROW_ORACLE_MAX_SPEND_PER_ESCROW" in row.error
    # the bound stops new reports, never the finalization of one mined: its refund goes out
    api.env.advance(CHALLENGE + 10)
    worker(api).run_until_idle()
    assert oracle_nonce(api) == nonce + 1  # the finalization, and no new report
    assert api.services.escrow.get_escrow(escrow_id).refunded > 0
