"""From stored samples to the oracle's queued findings (`backend.oracle.findings`), through the
oracle worker's own `enqueue`: one escrow whose samples cannot be evaluated (values stored
before the ingestion bound, or any other exception) is isolated, recorded where the breaches and
KPI views show it, and retried, while every other escrow's breaches go out in the same pass; the
evaluation is incremental (an unchanged escrow is not evaluated again until a sample arrives or
one of its periods closes). On the in-process chain, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, select

import backend.oracle.findings as findings_module
from backend.canonical import terms_hash
from backend.db.models import BreachSubmission, EscrowRow, EvidenceBundle, KpiSample
from backend.oracle.evaluation import Evaluation, Sample
from backend.oracle.findings import evaluation_failure, evaluator, next_change
from backend.oracle.terms import TermsModel, parse_terms
from backend.oracle.terms_store import store_terms
from backend.oracle.worker import Oracle
from tests.api.support import Api
from tests.support import DAY, ETH

#: the escrow of the observed fault: a sum of request errors per day
ERRORS_DOC: dict[str, Any] = {
    "version": 1,
    "title": "API with an error budget",
    "period_seconds": DAY,
    "grace_seconds": 0,
    "kpis": [{"id": "errors", "aggregate": "sum", "op": "<=", "threshold": 100}],
}
#: the other escrow: a major outage is an incident as soon as it is measured
OUTAGE_DOC: dict[str, Any] = {
    "version": 1,
    "title": "Hosting with an outage rule",
    "period_seconds": DAY,
    "grace_seconds": 0,
    "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
    "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60},
}
#: what two monitoring samples carried before values were bounded at ingestion
HUGE = 1.5e308


def kpi_escrow(api: Api, doc: dict[str, Any]) -> tuple[int, int]:
    """An accepted escrow whose oracle is the test oracle and whose terms are `doc` (stored),
    indexed; returns (id, accepted_at)."""
    env = api.env
    escrow_id = env.create_active(env.params((ETH, ETH), terms_hash=terms_hash(doc)))
    with api.services.sessions() as session, session.begin():
        store_terms(session, doc)
    api.index()
    with api.services.sessions() as session:
        row = session.get(EscrowRow, (api.services.chain_id, escrow_id))
        assert row is not None and row.accepted_at is not None
        return escrow_id, row.accepted_at


def store_samples(api: Api, escrow_id: int, samples: list[tuple[str, float, int]]) -> None:
    """Rows written as they are, bypassing ingestion (as samples stored before its bound)."""
    with api.services.sessions() as session, session.begin():
        session.add_all(
            KpiSample(chain_id=api.services.chain_id, escrow_id=escrow_id, kpi=kpi, value=value,
                      observed_at=at, received_at=at)
            for kpi, value, at in samples
        )


def oracle(api: Api) -> Oracle:
    """The oracle worker with the production evaluator (nothing is sent by `enqueue`)."""
    services, account = api.services, api.env.parties.oracle
    return Oracle(services, account, evaluate=evaluator(services, account.address))


def queued(api: Api, escrow_id: int) -> list[tuple[int, int]]:
    with api.services.sessions() as session:
        rows = session.scalars(select(BreachSubmission).where(
            BreachSubmission.escrow_id == escrow_id))
        return sorted((r.kind, r.period) for r in rows)


def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the evaluator's calls of the pure evaluation, by accepted_at."""
    calls: list[int] = []
    real: Callable[..., Evaluation] = findings_module.evaluate

    def counting(terms: TermsModel, accepted_at: int, now: int,
                 samples: list[Sample], **window: Any) -> Evaluation:
        calls.append(accepted_at)
        return real(terms, accepted_at, now, samples, **window)

    monkeypatch.setattr(findings_module, "evaluate", counting)
    return calls


def two_escrows(api: Api) -> tuple[int, int, int]:
    """Escrow `bad` (evaluated first) whose closed period 0 holds two samples of 1.5e308, and
    escrow `outage` whose 120 outage minutes are a major incident in its open period 1; returns
    (bad, its acceptance time, outage)."""
    env = api.env
    bad, bad_t0 = kpi_escrow(api, ERRORS_DOC)
    outage, t0 = kpi_escrow(api, OUTAGE_DOC)
    env.advance(DAY + 60)
    store_samples(api, bad, [("errors", HUGE, bad_t0 + 10), ("errors", HUGE, bad_t0 + 20)])
    store_samples(api, outage, [("outage_minutes", 120.0, t0 + DAY + 30)])
    assert bad < outage
    return bad, bad_t0, outage


def test_an_escrow_whose_samples_overflow_does_not_stop_another_escrows_incident_report(
    api: Api,
) -> None:
    bad, bad_t0, outage = two_escrows(api)
    worker = oracle(api)

    assert worker.enqueue() == 1  # the outage, in the same pass as the failing escrow
    assert queued(api, outage) == [(3, 1)]
    assert queued(api, bad) == []
    with api.services.sessions() as session:
        failure = evaluation_failure(session, api.services.chain_id, bad)
        assert evaluation_failure(session, api.services.chain_id, outage) is None
    assert failure is not None and failure.attempts == 1
    assert failure.error.startswith("AggregationError: KPI 'errors', period 0: sum cannot be")

    assert worker.enqueue() == 0  # retried on the next pass, still failing
    with api.services.sessions() as session:
        again = evaluation_failure(session, api.services.chain_id, bad)
    assert again is not None and again.attempts == 2
    assert again.first_failed_at == failure.first_failed_at

    with api.services.sessions() as session, session.begin():  # the operator removes them
        session.execute(delete(KpiSample).where(KpiSample.escrow_id == bad,
                                                KpiSample.value == HUGE))
    store_samples(api, bad, [("errors", 500.0, bad_t0 + 30)])
    assert worker.enqueue() == 1
    assert queued(api, bad) == [(1, 0)]
    with api.services.sessions() as session:
        assert evaluation_failure(session, api.services.chain_id, bad) is None


def test_the_breaches_and_kpi_views_show_the_failure_instead_of_answering_500(
    api: Api,
) -> None:
    bad, _, outage = two_escrows(api)
    oracle(api).enqueue()

    breaches = api.ok("GET", f"/api/escrows/{bad}/breaches")
    assert breaches["breaches"] == []
    error = breaches["evaluation_error"]
    assert error["attempts"] == 1 and error["first_failed_at"] == error["last_failed_at"]
    assert "sum cannot be computed" in error["error"]
    assert api.ok("GET", f"/api/escrows/{outage}/breaches")["evaluation_error"] is None

    kpis = api.ok("GET", f"/api/escrows/{bad}/kpis")
    assert kpis["evaluation_error"].startswith("AggregationError: KPI 'errors', period 0")
    assert (kpis["sample_count"], kpis["periods"], kpis["findings"]) == (2, [], [])
    fine = api.ok("GET", f"/api/escrows/{outage}/kpis")
    assert fine["evaluation_error"] is None
    assert [(f["kind"], f["period"]) for f in fine["findings"]] == [(3, 1)]
    scorecard = api.ok("GET", f"/api/providers/{api.env.provider}/scorecard")
    assert scorecard["series_skipped"]["evaluation_failed"] == 1
    assert {p["escrow_id"] for p in scorecard["series"]} == {outage}


def test_any_exception_in_one_escrows_evaluation_is_isolated_and_its_writes_rolled_back(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api.env
    first, t1 = kpi_escrow(api, OUTAGE_DOC)
    second, t2 = kpi_escrow(api, OUTAGE_DOC)
    store_samples(api, first, [("outage_minutes", 90.0, t1 + 30)])
    store_samples(api, second, [("outage_minutes", 90.0, t2 + 30)])
    env.advance(60)
    real_store = findings_module.store_bundle

    def store_then_fail(session: Any, bundle: dict[str, Any], **kw: Any) -> str:
        stored = real_store(session, bundle, **kw)
        if kw["escrow_id"] == first:
            raise RuntimeError("disk full")  # after its bundle was written
        return stored

    monkeypatch.setattr(findings_module, "store_bundle", store_then_fail)
    assert oracle(api).enqueue() == 1
    assert (queued(api, first), queued(api, second)) == ([], [(3, 0)])
    with api.services.sessions() as session:
        bundles = session.scalars(select(EvidenceBundle.escrow_id)).all()
        failure = evaluation_failure(session, api.services.chain_id, first)
    assert bundles == [second]  # the failing escrow's savepoint was rolled back
    assert failure is not None and failure.error == "RuntimeError: disk full"


def test_an_unchanged_escrow_is_not_evaluated_again_until_a_sample_arrives_or_a_period_closes(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api.env
    escrow_id, t0 = kpi_escrow(api, OUTAGE_DOC)
    env.advance(100)
    store_samples(api, escrow_id, [("uptime", 99.95, t0 + 10)])
    calls = evaluations(monkeypatch)
    worker = oracle(api)

    worker.enqueue()
    assert calls == [t0]  # the first pass evaluates every escrow with samples
    worker.enqueue()
    worker.enqueue()
    assert calls == [t0]  # nothing changed: not evaluated again

    store_samples(api, escrow_id, [("uptime", 90.0, t0 + 20)])  # period 0 now fails
    worker.enqueue()
    assert len(calls) == 2  # a new sample
    assert queued(api, escrow_id) == []  # period 0 is still open
    worker.enqueue()
    assert len(calls) == 2

    env.advance(DAY)  # period 0 closes (grace 0): its breach is due without a new sample
    worker.enqueue()
    assert len(calls) == 3
    assert queued(api, escrow_id) == [(1, 0)]
    worker.enqueue()
    assert len(calls) == 3


class Abort(Exception):
    pass


def test_a_pass_that_rolls_back_is_not_remembered(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api.env
    escrow_id, t0 = kpi_escrow(api, OUTAGE_DOC)
    store_samples(api, escrow_id, [("outage_minutes", 61.0, t0 + 10)])
    env.advance(60)
    calls = evaluations(monkeypatch)
    services, account = api.services, env.parties.oracle
    evaluate = evaluator(services, account.address)
    with pytest.raises(Abort), services.sessions() as session, session.begin():
        assert [(f.kind, f.period) for f in evaluate(session, services.chain_id)] == [(3, 0)]
        raise Abort  # found, then the transaction is rolled back
    assert len(calls) == 1
    worker = Oracle(services, account, evaluate=evaluate)
    assert worker.enqueue() == 1  # evaluated again: the finding was not lost
    assert len(calls) == 2 and queued(api, escrow_id) == [(3, 0)]
    worker.enqueue()
    assert len(calls) == 2


def test_the_next_change_is_the_next_period_closing_or_a_sample_coming_due() -> None:
    t = parse_terms({**ERRORS_DOC, "grace_seconds": 3_600})
    a = 1_700_000_000
    assert next_change(t, a, a, []) == a + DAY + 3_600  # period 0 closes after its grace
    assert next_change(t, a, a + DAY + 3_599, []) == a + DAY + 3_600
    assert next_change(t, a, a + DAY + 3_600, []) == a + 2 * DAY + 3_600
    ahead = [Sample("errors", 1.0, a + 50), Sample("errors", 1.0, a + 40)]
    assert next_change(t, a, a + 30, ahead) == a + 40  # observed ahead of the chain's time
