"""`GET /metrics`: Prometheus text with request counts and latencies per route template, the
indexed and head block, escrows by status and every sender's outbox (relayer and oracle) by status
with the age of its oldest transaction in flight."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from backend.api.app import create_app
from backend.api.routes.metrics import install_metrics
from backend.chain.connect import connect
from backend.db.models import BreachSubmission, ConfirmationRequest, OutboxTransaction
from tests.api.support import Api, api_on
from tests.chain.frozen_node import frozen_node
from tests.index.support import services_for
from tests.support import EscrowEnv


@pytest.fixture
def api(env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[Api]:
    with api_on(env, database_url, tmp_path) as api:
        install_metrics(api.app)
        install_metrics(api.app)  # a second call changes nothing
        yield api


def samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _outbox_row(escrow_id: int, milestone: int, status: str) -> ConfirmationRequest:
    now = int(time.time())
    return ConfirmationRequest(
        chain_id=0, escrow_id=escrow_id, milestone=milestone, rating=5,
        comment_hash="0x" + "00" * 32, deadline=now + 3600, signature="0x" + "11" * 65,
        signer="0x" + "22" * 20, status=status, created_at=now, updated_at=now,
    )


def test_metrics_count_requests_per_route_template_and_status(api: Api) -> None:
    env = api.env
    escrow_id = env.create()
    api.index()
    for _ in range(3):
        api.ok("GET", f"/api/escrows/{escrow_id}")
    api.error("GET", "/api/escrows/999", 404)
    api.ok("GET", "/api/escrows")
    api.http.get("/no/such/route")

    got = samples(api)
    route = "/api/escrows/{escrow_id}"

    def requests(route: str, status: str) -> float:
        key = (("method", "GET"), ("route", route), ("status", status))
        return got.get(("escrow_http_requests_total", key), 0.0)

    assert requests(route, "200") == 3
    assert requests(route, "404") == 1
    assert requests("/api/escrows", "200") == 1
    assert requests("unmatched", "404") == 1
    assert requests(f"/api/escrows/{escrow_id}", "200") == 0  # templates, never raw paths
    latency = (("method", "GET"), ("route", route))
    assert got[("escrow_http_request_duration_seconds_count", latency)] == 4
    assert got[("escrow_http_request_duration_seconds_sum", latency)] > 0
    # the scrape itself shows up in the next one
    scrape = (("method", "GET"), ("route", "/metrics"), ("status", "200"))
    assert samples(api)[("escrow_http_requests_total", scrape)] == 1


def test_metrics_report_blocks_escrows_by_status_and_the_outbox(api: Api) -> None:
    env = api.env
    env.create_active()
    env.create()
    env.create()
    api.index()
    chain_id = api.services.chain_id
    with api.services.sessions() as session, session.begin():
        for i, status in enumerate(["pending", "pending", "sent", "mined"]):
            row = _outbox_row(1, i, status)
            row.chain_id = chain_id
            session.add(row)
        other_chain = _outbox_row(1, 9, "failed")  # another chain's outbox is not ours
        session.add(other_chain)

    got = samples(api)
    head = env.w3.eth.block_number
    assert got[("escrow_head_block", ())] == head
    assert got[("escrow_indexed_block", ())] == head
    statuses = ("proposed", "active", "closed")
    escrows = {s: got[("escrow_escrows", (("status", s),))] for s in statuses}
    assert escrows == {"proposed": 2, "active": 1, "closed": 0}
    outbox = {
        s: got[("escrow_outbox_rows", (("sender", "relayer"), ("status", s)))]
        for s in ("pending", "signed", "sent", "mined", "failed")
    }
    assert outbox == {"pending": 2, "signed": 0, "sent": 1, "mined": 1, "failed": 0}


def _breach_row(chain_id: int, period: int, status: str, now: int) -> BreachSubmission:
    return BreachSubmission(
        chain_id=chain_id, escrow_id=1, kind=1, period=period, evidence_hash="0x" + "ab" * 32,
        oracle="0x" + "33" * 20, status=status, follow_up="none", created_at=now, updated_at=now,
    )


def _transaction(
    chain_id: int, sender: str, nonce: int, status: str, at: int
) -> OutboxTransaction:
    return OutboxTransaction(
        chain_id=chain_id, account="0x" + "33" * 20, sender=sender, purpose="report",
        nonce=nonce, raw_tx="0x02", tx_hash=f"0x{nonce:064x}", status=status, created_at=at,
        updated_at=at,
    )


def test_metrics_show_the_outbox_of_the_relayer_and_of_the_oracle_with_their_oldest_in_flight(
    api: Api,
) -> None:
    chain_id = api.services.chain_id
    now = int(time.time())
    with api.services.sessions() as session, session.begin():
        signed = _transaction(chain_id, "oracle", 1, "signed", now - 600)
        session.add_all([
            signed,
            _transaction(chain_id, "oracle", 2, "sent", now - 60),
            _transaction(chain_id, "oracle", 0, "mined", now - 6000),  # final: not in flight
        ])
        session.flush()
        report = _breach_row(chain_id, 1, "signed", now)
        report.report_tx_id = signed.id
        session.add_all([report, _breach_row(chain_id, 2, "not_sent", now)])

    got = samples(api)
    oracle = {
        s: got[("escrow_outbox_rows", (("sender", "oracle"), ("status", s)))]
        for s in ("pending", "signed", "sent", "mined", "failed", "not_sent")
    }
    assert oracle == {
        "pending": 0, "signed": 1, "sent": 0, "mined": 0, "failed": 0, "not_sent": 1
    }
    relayer = [v for (name, labels), v in got.items()
               if name == "escrow_outbox_rows" and ("sender", "relayer") in labels]
    assert relayer == [0] * 6
    age = got[("escrow_outbox_oldest_in_flight_seconds", (("sender", "oracle"),))]
    assert 600 <= age < 700
    assert got[("escrow_outbox_oldest_in_flight_seconds", (("sender", "relayer"),))] == 0


def test_metrics_before_the_indexer_ran_have_no_indexed_block(api: Api) -> None:
    got = samples(api)
    assert ("escrow_indexed_block", ()) not in got
    assert got[("escrow_head_block", ())] == api.env.w3.eth.block_number


def test_metrics_answer_within_seconds_while_the_node_accepts_connections_and_never_answers(
    env: EscrowEnv, tmp_path: Path
) -> None:
    """Observed: `/metrics` gave no answer for over 70 s with the node frozen. Now the scrape
    leaves the head out after ESCROW_HEALTH_NODE_TIMEOUT (1 s here) and reports the rest."""
    with services_for(env, f"sqlite:///{tmp_path / 'm.db'}", tmp_path,
                      health_node_timeout=1.0) as services:
        client = TestClient(create_app(services))
        with frozen_node() as node:
            services.w3 = connect(node.url, timeout=3)
            start = time.monotonic()
            response = client.get("/metrics")
            took = time.monotonic() - start
        print(f"\nfrozen node: /metrics answered in {took:.2f} s")
    assert response.status_code == 200 and took < 5.0
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert "escrow_head_block" not in names
    assert {"escrow_indexed_block", "escrow_escrows", "escrow_outbox_rows"} <= names


def test_metrics_show_the_api_process_admission_places_and_what_they_admitted_and_refused(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create()
    api.index()
    for _ in range(3):
        api.ok("GET", f"/api/escrows/{escrow_id}")
    admission = api.app.state.admission
    admission.refused += 2  # as two requests refused with 503 overloaded would have counted

    got = samples(api)

    assert got[("escrow_api_places", ())] == admission.limit
    assert got[("escrow_api_places_in_use", ())] == 0  # the scrape itself is not admitted
    assert got[("escrow_api_waiting", ())] == 0
    assert got[("escrow_api_admitted_total", ())] == admission.admitted >= 3
    assert got[("escrow_api_refused_total", ())] == 2
    assert 1 <= got[("escrow_api_places_peak", ())] <= admission.limit
