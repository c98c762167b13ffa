"""Analytics on SQLite and PostgreSQL: `GET /api/providers/{address}/scorecard` (ratings,
deliveries confirmed within the review period, breaches, refund share, KPI series) and
`GET /api/escrows/{id}/kpis` (per-period values and verdicts, the incident rule, findings)."""

from __future__ import annotations

from typing import Any

from backend.canonical import terms_hash
from backend.db.models import KpiSample
from backend.oracle.terms_store import store_terms
from tests.api.support import Api
from tests.support import CHALLENGE, DAY, ETH, REVIEW

DOC: dict[str, Any] = {
    "version": 1,
    "title": "Hosting with an uptime KPI",
    "period_seconds": DAY,
    "grace_seconds": 0,
    "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
    "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60},
}
EVIDENCE = b"\x33" * 32


def kpi_escrow(api: Api, amounts: tuple[int, ...] = (ETH, 2 * ETH)) -> tuple[int, int]:
    """An accepted escrow whose terms are `DOC` (stored); returns (id, accepted_at)."""
    env = api.env
    escrow_id = env.create_active(env.params(amounts, terms_hash=terms_hash(DOC)))
    with api.services.sessions() as session, session.begin():
        store_terms(session, DOC)
    return escrow_id, env.now()


def add_samples(api: Api, escrow_id: int, samples: list[tuple[str, float, int]]) -> None:
    with api.services.sessions() as session, session.begin():
        session.add_all(
            KpiSample(chain_id=api.services.chain_id, escrow_id=escrow_id, kpi=kpi, value=value,
                      observed_at=at, received_at=at)
            for kpi, value, at in samples
        )


def uptime_samples(t0: int) -> list[tuple[str, float, int]]:
    """Period 0: mean exactly 99.9 (passes `>= 99.9`), 60 outage minutes (not `> 60`);
    period 1: 98.0 (fails) and 61 outage minutes (the incident); period 2 onwards: none."""
    return [
        ("uptime", 99.9, t0 + 10), ("uptime", 99.9, t0 + 20),
        ("outage_minutes", 30.0, t0 + 30), ("outage_minutes", 30.0, t0 + 40),
        ("uptime", 98.0, t0 + DAY + 10), ("outage_minutes", 61.0, t0 + DAY + 20),
    ]


def test_a_scorecard_counts_ratings_deliveries_breaches_refunds_and_series(api: Api) -> None:
    env, esc = api.env, api.env.escrow
    a, a_start = kpi_escrow(api)  # 3 ETH, terms and samples stored
    add_samples(api, a, uptime_samples(a_start))
    b = env.create_active(env.params((ETH, ETH)))  # 2 ETH, terms not stored
    c = env.create(env.params((1_000_000,), token=env.token))  # proposed, TUSD
    env.create(env.params(provider=env.parties.stranger.address))  # another provider
    # b: kind 1 reserves 5% of 2 ETH, kind 3 20%; the first is finalized, the second challenged
    k1, _ = esc.report_breach(b, 1, 0, EVIDENCE, env.oracle)
    k3, _ = esc.report_breach(b, 3, 0, EVIDENCE, env.oracle)
    esc.challenge_breach(b, k3, env.provider)
    env.deliver(b, 0)
    esc.confirm(b, 0, 2, None, env.client)
    env.deliver(b, 1)
    esc.open_dispute(b, 1, None, env.client)
    env.deliver(a, 0)
    esc.confirm(a, 0, 4, None, env.client)
    env.deliver(a, 1)
    env.advance(CHALLENGE + 1)
    esc.finalize_breach(b, k1, env.oracle)
    env.advance(REVIEW - CHALLENGE)
    esc.release_after_timeout(a, 1, env.provider)
    api.index()

    body = api.ok("GET", f"/api/providers/{env.provider.lower()}/scorecard")
    assert body["provider"] == env.provider
    assert body["escrows"] == {"total": 3, "by_status": {"proposed": 1, "active": 1, "closed": 1},
                               "ids": [a, b, c]}
    assert body["average_rating"] == 3.0
    assert body["ratings"] == {"count": 2,
                               "histogram": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 0}}
    assert body["deliveries"] == {"delivered": 4, "confirmed_within_review": 2,
                                  "confirmed_after_review": 0, "released_by_timeout": 1,
                                  "disputed": 1}
    assert body["breaches"] == {
        "total": 2, "by_kind": {"1": 1, "2": 0, "3": 1},
        "by_state": {"reported": 0, "challenged": 1, "finalized": 1, "upheld": 0,
                     "rejected": 0, "stale_split": 0}}
    assert body["refunds"] == [
        {"token": "0x" + "00" * 20, "symbol": "ETH", "decimals": 18,
         "refunded": str(ETH // 10), "value": str(5 * ETH), "share": "0.020000"},
        {"token": env.token, "symbol": "TUSD", "decimals": 6,
         "refunded": "0", "value": "1000000", "share": "0.000000"},
    ]
    assert body["series_skipped"] == {"not_accepted": 1, "no_terms": 1, "unreadable_terms": 0,
                                      "no_samples": 0, "evaluation_failed": 0,
                                      "period_too_short": 0, "beyond_limit": 0}
    series = body["series"]
    assert len(series) == (body["now"] - a_start) // DAY + 1
    assert series[:3] == [
        {"escrow_id": a, "kpi": "uptime", "period": 0, "period_start": a_start,
         "period_end": a_start + DAY, "closed": True, "value": 99.9, "aggregate": "mean",
         "op": ">=", "threshold": 99.9, "verdict": "pass"},
        {"escrow_id": a, "kpi": "uptime", "period": 1, "period_start": a_start + DAY,
         "period_end": a_start + 2 * DAY, "closed": True, "value": 98.0, "aggregate": "mean",
         "op": ">=", "threshold": 99.9, "verdict": "fail"},
        {"escrow_id": a, "kpi": "uptime", "period": 2, "period_start": a_start + 2 * DAY,
         "period_end": a_start + 3 * DAY, "closed": True, "value": None, "aggregate": "mean",
         "op": ">=", "threshold": 99.9, "verdict": "missing"},
    ]


def test_a_provider_without_escrows_gets_zeros_and_a_malformed_address_400(api: Api) -> None:
    api.index()
    stranger = api.env.parties.stranger.address
    body = api.ok("GET", f"/api/providers/{stranger}/scorecard")
    assert body["escrows"] == {"total": 0, "by_status": {"proposed": 0, "active": 0, "closed": 0},
                               "ids": []}
    assert body["average_rating"] is None
    assert body["deliveries"]["delivered"] == 0
    assert body["breaches"]["total"] == 0
    assert (body["refunds"], body["series"]) == ([], [])
    assert api.error("GET", "/api/providers/0x1234/scorecard", 400)["error"] == "malformed"
    api.error("GET", "/api/providers/0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD/scorecard", 400)


def test_escrow_kpis_give_values_verdicts_the_incident_and_findings(api: Api) -> None:
    env = api.env
    a, t0 = kpi_escrow(api)
    add_samples(api, a, uptime_samples(t0))
    env.advance(2 * DAY + 5)
    esc = env.escrow
    esc.report_breach(a, 1, 1, EVIDENCE, env.oracle)
    api.index()
    body = api.ok("GET", f"/api/escrows/{a}/kpis")
    assert (body["escrow_id"], body["status"], body["accepted_at"]) == (a, "active", t0)
    assert (body["period_seconds"], body["grace_seconds"], body["missing_data"]) == (
        DAY, 0, "ignore")
    assert body["sample_count"] == 6
    periods = body["periods"]
    assert len(periods) == (body["now"] - t0) // DAY + 1
    assert [(p["period"], p["start"], p["end"], p["closed"], p["verdict"])
            for p in periods[:3]] == [
        (0, t0, t0 + DAY, True, "pass"), (1, t0 + DAY, t0 + 2 * DAY, True, "fail"),
        (2, t0 + 2 * DAY, t0 + 3 * DAY, False, "missing")]
    assert periods[0]["kpis"] == [{"id": "uptime", "aggregate": "mean", "op": ">=",
                                   "threshold": 99.9, "value": 99.9, "verdict": "pass",
                                   "samples": 2, "min_samples": 1}]
    assert periods[1]["kpis"][0]["value"] == 98.0
    assert periods[1]["kpis"][0]["verdict"] == "fail"
    assert periods[2]["kpis"][0]["value"] is None
    assert body["incident"] == {
        "rule": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60.0},
        "min_samples": 1,
        "met": True,
        "periods": [{"period": 0, "value": 60.0, "samples": 2, "met": False},
                    {"period": 1, "value": 61.0, "samples": 1, "met": True}]}
    assert body["evaluation_error"] is None
    assert [(f["kind"], f["period"], f["period_start"], f["reported_on_chain"])
            for f in body["findings"]] == [(1, 1, t0 + DAY, True), (3, 1, t0 + DAY, False)]
    assert body["findings"][0]["rule"]["kpis"] == ["uptime"]


def test_escrow_kpis_are_404_for_an_unknown_escrow_and_409_without_stored_terms(
    api: Api,
) -> None:
    env = api.env
    b = env.create_active(env.params())
    api.index()
    assert api.error("GET", "/api/escrows/999/kpis", 404)["error"] == "not_found"
    assert api.error("GET", "/api/escrows/0/kpis", 404)["error"] == "not_found"
    body = api.error("GET", f"/api/escrows/{b}/kpis", 409)
    assert body["error"] == "terms_not_stored"
    assert "is not stored: POST it to /api/terms first" in body["detail"]


def test_escrow_kpis_of_an_escrow_not_yet_accepted_have_no_periods(api: Api) -> None:
    env = api.env
    escrow_id = env.create(env.params(terms_hash=terms_hash(DOC)))
    with api.services.sessions() as session, session.begin():
        store_terms(session, DOC)
    api.index()
    body = api.ok("GET", f"/api/escrows/{escrow_id}/kpis")
    assert (body["status"], body["accepted_at"], body["periods"], body["findings"]) == (
        "proposed", None, [], [])
    assert body["incident"]["met"] is False


LATENCY_DOC: dict[str, Any] = {
    "version": 1,
    "title": "Hosting with a latency KPI",
    "period_seconds": DAY,
    "grace_seconds": 0,
    "kpis": [{"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300}],
}


def test_escrow_kpis_show_a_p95_of_too_few_samples_as_missing_with_its_min_samples(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,), terms_hash=terms_hash(LATENCY_DOC)))
    with api.services.sessions() as session, session.begin():
        store_terms(session, LATENCY_DOC)
    t0 = env.now()
    slow_one = [("p95_latency_ms", 120.0, t0 + 10 + i) for i in range(9)]
    add_samples(api, escrow_id, [*slow_one, ("p95_latency_ms", 900.0, t0 + 30)])
    env.advance(DAY + 5)
    api.index()
    body = api.ok("GET", f"/api/escrows/{escrow_id}/kpis")
    assert body["periods"][0]["kpis"] == [
        {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300.0,
         "value": None, "verdict": "missing", "samples": 10, "min_samples": 20}]
    assert body["periods"][0]["verdict"] == "missing"
    assert body["findings"] == []  # no refund for the one slow sample of ten
