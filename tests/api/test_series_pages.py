"""Terms get a minimum period, and the per-period series are pages. Observed:
terms with `period_seconds: 1` were accepted, and `GET /api/escrows/{id}/kpis` on such an escrow
evaluated one period per second since acceptance (52 MB and 3 s per request after a day). Now
`POST /api/terms` and `POST /api/escrows/prepare` refuse a period below ESCROW_MIN_PERIOD_SECONDS
(422 `period_too_short`), terms stored before that are not evaluated (the views say why), and
`/kpis`, `/breaches` and the scorecard's series answer a bounded page whatever the escrow's age.
On the in-process chain, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import backend.oracle.scorecard as scorecard_module
from backend.canonical import terms_hash
from backend.chain.types import MAX_PERIOD
from backend.db.models import EscrowRow, EvidenceBundle
from backend.oracle.evaluation import Evaluation, evaluate
from backend.oracle.scorecard import MAX_KPI_PAGE, MAX_STREAK_LOOKBACK
from backend.oracle.terms_store import store_terms
from tests.api.support import Api
from tests.api.test_escrows import TERMS_DOC, prepare_body
from tests.oracle.test_findings import store_samples
from tests.support import DAY, ETH

SPAM_DOC: dict[str, Any] = {
    "version": 1, "title": "One period per second", "period_seconds": 1, "grace_seconds": 0,
    "missing_data": "breach", "consecutive_periods": 3,
    "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
}
TOO_SHORT = ("period_seconds 1 is too short: the minimum period is 3600 seconds "
             "(ESCROW_MIN_PERIOD_SECONDS)")


def day_old_escrow(api: Api, doc: dict[str, Any]) -> tuple[int, int]:
    """An accepted escrow committed to `doc`, stored as it is (as before the minimum period),
    with one sample, a day old; returns (id, accepted_at)."""
    env = api.env
    escrow_id = env.create_active(env.params((ETH, ETH), terms_hash=terms_hash(doc)))
    with api.services.sessions() as session, session.begin():
        store_terms(session, doc, min_period_seconds=1)
    api.index()
    with api.services.sessions() as session:
        row = session.get(EscrowRow, (api.services.chain_id, escrow_id))
        assert row is not None and row.accepted_at is not None
        t0 = row.accepted_at
    store_samples(api, escrow_id, [("uptime", 90.0, t0 + 1)])
    env.advance(DAY)
    return escrow_id, t0


def counting_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The periods each evaluation of the KPI views computed."""
    counts: list[int] = []
    real: Callable[..., Evaluation] = evaluate

    def counting(*args: Any, **kwargs: Any) -> Evaluation:
        result = real(*args, **kwargs)
        counts.append(len(result.periods))
        return result

    monkeypatch.setattr(scorecard_module, "evaluate", counting)
    return counts


def test_terms_with_a_period_below_the_minimum_are_refused_where_terms_are_accepted(
    api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert api.error("POST", "/api/terms", 422, json=SPAM_DOC) == {
        "error": "period_too_short", "detail": TOO_SHORT}
    inline = api.error("POST", "/api/escrows/prepare", 422,
                       json=prepare_body(api.env, terms_document=SPAM_DOC))
    assert inline == {"error": "period_too_short",
                      "detail": "terms_document." + TOO_SHORT}
    with api.services.sessions() as session, session.begin():  # stored before the minimum
        stored = store_terms(session, SPAM_DOC, min_period_seconds=1)
    by_hash = api.error("POST", "/api/escrows/prepare", 422, json=prepare_body(
        api.env, terms_document=None, terms_hash=stored))
    assert by_hash == {"error": "period_too_short", "detail": "terms_hash." + TOO_SHORT}
    api.ok("POST", "/api/terms", 201, json={**TERMS_DOC, "period_seconds": 3_600})
    # the operator's setting, ESCROW_MIN_PERIOD_SECONDS
    monkeypatch.setattr(api.services.settings, "min_period_seconds", 60)
    api.ok("POST", "/api/terms", 201, json={**SPAM_DOC, "period_seconds": 60})
    assert "the minimum period is 60 seconds" in api.error(
        "POST", "/api/terms", 422, json={**SPAM_DOC, "period_seconds": 59})["detail"]


def test_kpis_of_a_day_old_one_second_escrow_say_why_without_evaluating_it(
    api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    escrow_id, _ = day_old_escrow(api, SPAM_DOC)
    counts = counting_evaluations(monkeypatch)
    body = api.ok("GET", f"/api/escrows/{escrow_id}/kpis")
    assert body["evaluation_error"] == (
        "period_seconds 1 is below the minimum period of 3600 seconds "
        "(ESCROW_MIN_PERIOD_SECONDS): the terms are not evaluated")
    assert (body["periods"], body["findings"], counts) == ([], [], [])
    assert body["total_periods"] >= DAY and body["sample_count"] == 1


def test_kpis_of_a_day_old_one_second_escrow_are_one_bounded_page(
    api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.services.settings, "min_period_seconds", 1)  # evaluated after all
    escrow_id, t0 = day_old_escrow(api, SPAM_DOC)
    counts = counting_evaluations(monkeypatch)

    body = api.ok("GET", f"/api/escrows/{escrow_id}/kpis")

    total = body["total_periods"]
    assert total >= DAY  # one period per second since acceptance
    assert [p["period"] for p in body["periods"]] == list(range(total - 100, total))
    assert (body["from_period"], body["limit"], body["next_from_period"],
            body["previous_from_period"]) == (total - 100, 100, None, total - 200)
    # every period fails (missing data is a breach): kind 1 each closed period, kind 2 every
    # third of the run, counted from where the lookback stopped
    assert body["streak_from_period"] == total - 100 - 2
    assert len(body["findings"]) <= 100 + 100 // 3 + 1
    # the work is the page plus the bounded lookback, not the 86,400 periods of the day
    assert sum(counts) <= MAX_STREAK_LOOKBACK + 100 + 2

    counts.clear()
    first = api.ok("GET", f"/api/escrows/{escrow_id}/kpis?from_period=0&limit={MAX_KPI_PAGE}")
    assert [p["period"] for p in first["periods"]] == list(range(MAX_KPI_PAGE))
    assert first["periods"][1]["kpis"][0]["samples"] == 1
    assert (first["next_from_period"], first["previous_from_period"]) == (MAX_KPI_PAGE, None)
    assert [(f["kind"], f["period"]) for f in first["findings"]][:4] == [
        (1, 0), (1, 1), (1, 2), (2, 2)]
    assert sum(counts) == MAX_KPI_PAGE  # from period 0: no lookback
    assert first["periods"][1]["start"] == t0 + 1
    api.error("GET", f"/api/escrows/{escrow_id}/kpis?limit={MAX_KPI_PAGE + 1}", 422)
    api.error("GET", f"/api/escrows/{escrow_id}/kpis?from_period=-1", 422)
    beyond = api.ok("GET", f"/api/escrows/{escrow_id}/kpis?from_period={total + 5}")
    assert (beyond["periods"], beyond["next_from_period"]) == ([], None)

    provider = api.env.provider
    card = api.ok("GET", f"/api/providers/{provider}/scorecard")
    mine = [p for p in card["series"] if p["escrow_id"] == escrow_id]
    assert len(mine) == 30  # the latest 30 periods, one KPI


def test_breaches_are_served_a_page_of_periods_at_a_time(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params())
    api.index()
    with api.services.sessions() as session, session.begin():
        session.add_all(
            EvidenceBundle(evidence_hash="0x" + f"{period:064x}", chain_id=api.services.chain_id,
                           escrow_id=escrow_id, kind=1, period=period,
                           canonical=f'{{"period": {period}}}', created_at=1)
            for period in (*range(0, 120), 5_000)
        )
    page = api.ok("GET", f"/api/escrows/{escrow_id}/breaches")
    assert [b["period"] for b in page["breaches"]] == list(range(50))
    assert (page["from_period"], page["limit"], page["next_from_period"]) == (0, 50, 50)
    last = api.ok("GET", f"/api/escrows/{escrow_id}/breaches?from_period=100&limit=200")
    assert [b["period"] for b in last["breaches"]] == list(range(100, 120))
    assert last["next_from_period"] == 5_000  # the next period with a breach
    tail = api.ok("GET", f"/api/escrows/{escrow_id}/breaches?from_period=5000")
    assert ([b["period"] for b in tail["breaches"]], tail["next_from_period"]) == ([5_000], None)
    api.error("GET", f"/api/escrows/{escrow_id}/breaches?limit=201", 422)


def test_a_first_period_past_the_last_the_chain_can_hold_is_refused_not_a_500(api: Api) -> None:
    """Periods are uint32 on the chain; observed: `/breaches?from_period=2**63-1` overflowed the
    database's integer and answered 500."""
    env = api.env
    escrow_id = env.create_active(env.params((ETH, ETH), terms_hash=terms_hash(TERMS_DOC)))
    with api.services.sessions() as session, session.begin():
        store_terms(session, TERMS_DOC, min_period_seconds=1)
    api.index()
    for series in ("kpis", "breaches"):
        last = api.http.get(f"/api/escrows/{escrow_id}/{series}",
                            params={"from_period": MAX_PERIOD})
        assert last.status_code == 200, (series, last.text)
        for beyond in (MAX_PERIOD + 1, 2**63 - 1, 10**23):
            refused = api.http.get(f"/api/escrows/{escrow_id}/{series}",
                                   params={"from_period": beyond})
            assert refused.status_code == 422, (series, beyond, refused.text)
            assert refused.json()["detail"].startswith("from_period"), refused.text
