"""`GET /api/evidence/{hash}` and `GET /api/escrows/{id}/breaches`, on SQLite and PostgreSQL:
bundles served byte for byte, on-chain reports joined with their bundles, a report that reserved
nothing and a finding recorded but not sent both shown with a note."""

from __future__ import annotations

from eth_utils import keccak

from backend.db.models import BreachSubmission
from backend.oracle.evaluation import Sample, evaluate
from backend.oracle.evidence import evidence_bundle, store_bundle
from backend.oracle.terms import parse_terms
from tests.api.support import Api
from tests.support import ETH

TERMS = parse_terms({
    "version": 1, "title": "t", "period_seconds": 100, "grace_seconds": 0,
    "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
})


def store_finding(api: Api, escrow_id: int, period: int) -> str:
    """Evaluates one bad sample in `period` and stores the kind-1 bundle; returns its hash."""
    t0 = 1_700_000_000
    (finding,) = evaluate(TERMS, t0, t0 + 1_000, [Sample("uptime", 90.0, t0 + period * 100)]
                          ).findings
    bundle = evidence_bundle(finding, chain_id=api.services.chain_id,
                             contract=api.env.escrow.address, escrow_id=escrow_id,
                             terms_hash_hex="0x" + "11" * 32, oracle=api.env.oracle)
    with api.services.sessions() as session, session.begin():
        return store_bundle(session, bundle, chain_id=api.services.chain_id,
                            escrow_id=escrow_id, kind=1, period=period)


def test_a_stored_bundle_is_served_as_canonical_bytes_that_rehash_to_its_hash(api: Api) -> None:
    evidence_hash = store_finding(api, 1, 0)
    response = api.http.get(f"/api/evidence/{evidence_hash.upper().replace('0X', '0x')}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "0x" + keccak(response.content).hex() == evidence_hash
    body = response.json()
    assert (body["escrow_id"], body["kind"], body["period"]) == (1, 1, 0)
    assert body["kpis"][0]["samples"] == [
        {"kpi": "uptime", "value": 90, "observed_at": 1_700_000_000}]


def test_an_unknown_bundle_is_404_and_a_malformed_hash_400(api: Api) -> None:
    assert api.error("GET", "/api/evidence/0x" + "00" * 32, 404)["error"]
    assert api.error("GET", "/api/evidence/0x1234", 400)["error"]


def test_breaches_join_the_chain_the_bundles_and_the_outbox(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params(
        terms=env.terms(breach_refund_bps=500, max_refund_bps=500)))
    first, second = store_finding(api, escrow_id, 0), store_finding(api, escrow_id, 1)
    env.escrow.report_breach(escrow_id, 1, 0, first, env.oracle)
    env.escrow.report_breach(escrow_id, 1, 1, second, env.oracle)  # cap used: reserves 0
    not_sent = store_finding(api, escrow_id, 2)
    with api.services.sessions() as session, session.begin():
        session.add(BreachSubmission(
            chain_id=api.services.chain_id, escrow_id=escrow_id, kind=1, period=2,
            evidence_hash=not_sent, oracle=env.oracle, status="not_sent",
            error="escrow closed", created_at=1, updated_at=2))
    api.index()
    body = api.ok("GET", f"/api/escrows/{escrow_id}/breaches")
    assert body["escrow_id"] == escrow_id
    rows = body["breaches"]
    assert [(r["kind"], r["period"], r["on_chain"], r["breach_id"]) for r in rows] == [
        (1, 0, True, 0), (1, 1, True, 1), (1, 2, False, None)]
    assert [r["reserved"] for r in rows] == [str(3 * ETH * 500 // 10_000), "0", "0"]
    assert [r["evidence_hash"] for r in rows] == [first, second, not_sent]
    assert rows[0]["state"] == "reported" and rows[0]["note"] is None
    assert rows[0]["evidence"]["period"] == 0
    assert "nothing reserved" in rows[1]["note"]
    assert rows[2]["submission"]["status"] == "not_sent"
    assert rows[2]["note"].startswith("recorded, not sent") and "escrow closed" in rows[2]["note"]
    assert rows[2]["evidence"]["period"] == 2


def test_breaches_of_an_unknown_escrow_are_404(api: Api) -> None:
    api.index()
    assert api.error("GET", "/api/escrows/999/breaches", 404)["error"]
