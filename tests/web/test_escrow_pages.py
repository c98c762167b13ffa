"""The escrow page (`GET /escrows/{id}`), the arbiter's desk (`GET /arbiter`) and the auditor
(`GET /audit`) as HTML: what each shows in token units and words, which actions it offers to
which party at chain time now, the KPI charts (`backend/web/charts.py`, unit-tested here too),
the Russian rendering, and the error page with the API's status for bad ids."""

from __future__ import annotations

import json
import re
from typing import Any

from eth_utils import keccak
from markupsafe import Markup

from backend.canonical import canonical_json, terms_hash
from backend.db.models import KpiSample, MilestoneDocument, Review
from backend.oracle.terms_store import store_terms
from backend.web.charts import (
    MAX_POINTS,
    ChartText,
    KpiPoint,
    KpiSeries,
    kpi_chart_svg,
    kpi_series,
    number,
)
from backend.web.escrow_pages import chart_markup, kpi_label
from tests.api.support import Api
from tests.support import ARBITRATION, CHALLENGE, DAY, ETH, REVIEW

DOC: dict[str, Any] = {
    "version": 1,
    "title": "Managed hosting <SLA>",
    "period_seconds": DAY,
    "grace_seconds": 0,
    "kpis": [
        {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
        {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300},
    ],
    "consecutive_periods": 3,
    "acceptance_criteria": ["Service reachable at the agreed endpoint", "Backups restored"],
}
PHOTO = "ab" * 32
PDF = "cd" * 32


def _text(html: str) -> str:
    """The visible text, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&lt;", "<").replace(
        "&gt;", ">")


def _section(html: str, heading_id: str) -> str:
    """The `<section>` labelled by `heading_id`."""
    start = html.index(f'aria-labelledby="{heading_id}"')
    return html[start:html.index("</section>", start)]


def _escrow_with_terms(api: Api, amounts: tuple[int, ...] = (ETH, 2 * ETH)) -> int:
    env = api.env
    escrow_id = env.create_active(env.params(amounts, terms_hash=terms_hash(DOC)))
    with api.services.sessions() as session, session.begin():
        store_terms(session, DOC)
    return escrow_id


def _review(api: Api, document: dict[str, Any]) -> str:
    comment_hash = "0x" + keccak(canonical_json(document)).hex()
    with api.services.sessions() as session, session.begin():
        session.add(Review(comment_hash=comment_hash,
                           canonical=canonical_json(document).decode(), created_at=1))
    return comment_hash


def _delivery(api: Api, escrow_id: int, milestone: int, document: dict[str, Any]) -> None:
    """Stores a delivery document and submits its hash, as `POST .../delivery` and the
    provider's wallet do."""
    delivery_hash = keccak(canonical_json(document))
    with api.services.sessions() as session, session.begin():
        session.add(MilestoneDocument(document_hash="0x" + delivery_hash.hex(), kind="delivery",
                                      canonical=canonical_json(document).decode(), created_at=1))
    api.env.escrow.submit_delivery(escrow_id, milestone, delivery_hash, api.env.provider)


def _samples(api: Api, escrow_id: int, rows: list[tuple[str, float, int]]) -> None:
    with api.services.sessions() as session, session.begin():
        session.add_all(
            KpiSample(chain_id=api.services.chain_id, escrow_id=escrow_id, kpi=kpi,
                      value=value, observed_at=at, received_at=at)
            for kpi, value, at in rows
        )


# ------------------------------------------------------------------ the escrow page


def test_the_escrow_page_shows_parties_money_milestones_terms_breaches_and_links(
    api: Api,
) -> None:
    env = api.env
    escrow_id = _escrow_with_terms(api, (ETH, 2 * ETH, ETH))
    accepted = env.now()
    env.deliver(escrow_id, 0)
    review = _review(api, {
        "comment": "Works <well>",
        "attachments": [
            {"name": "screen.png", "media_type": "image/png", "size": 10, "sha256": PHOTO},
            {"name": "act.pdf", "media_type": "application/pdf", "size": 20, "sha256": PDF},
        ],
        "criteria": [{"index": 0, "met": True}, {"index": 1, "met": False, "note": "not yet"}],
    })
    env.escrow.confirm(escrow_id, 0, 4, review, env.client)
    env.deliver(escrow_id, 1)
    _samples(api, escrow_id, [("uptime_pct", 99.95, accepted + 10),
                              ("uptime_pct", 98.0, accepted + DAY + 10)])
    env.advance(2 * DAY + 60)
    env.escrow.report_breach(escrow_id, 1, 1, b"\x33" * 32, env.oracle)
    api.index()

    response = api.http.get(f"/escrows/{escrow_id}")
    assert response.status_code == 200
    html = response.text
    text = _text(html)
    assert f"Escrow {escrow_id}: Managed hosting <SLA>" in text
    assert "&lt;SLA&gt;" in html  # escaped
    # parties: short, full in the title, marked by the script
    short = f"{env.provider[:6]}…{env.provider[-4:]}"
    code = f'<code title="{env.provider}" data-address="{env.provider.lower()}">{short}</code>'
    assert code in html
    # money in token units, never wei
    money = _text(_section(html, "h-money"))
    assert "Total 4 ETH" in money and "Credited to the provider 0.8 ETH" in money
    assert "Reserved for breach reports 0.2 ETH" in money  # 5 % of 4 ETH
    assert "wei" not in text
    # the timeline
    assert '<ol class="timeline">' in html
    assert re.search(r'<li class="milestone settled" id="milestone-0"', html)
    assert re.search(r'<li class="milestone delivered" id="milestone-1"', html)
    assert re.search(r'<li class="milestone pending" id="milestone-2"', html)
    first = _text(html[html.index('id="milestone-0"'):html.index('id="milestone-1"')])
    assert "confirmed by the client" in first and "4 of 5" in first
    assert "To the provider 0.8 ETH" in first and "To the client 0.2 ETH" in first
    assert "Works <well>" in first
    assert f'<img src="/api/attachments/{PHOTO}" alt="screen.png"' in html
    assert f'<a href="/api/attachments/{PDF}">act.pdf</a>' in html
    assert "✓ Service reachable at the agreed endpoint: met" in first
    assert "✗ Backups restored: not met — not yet" in first
    assert f"/api/escrows/{escrow_id}/milestones/0/act.pdf" in html
    second = _text(html[html.index('id="milestone-1"'):html.index('id="milestone-2"')])
    assert "delivered, in review" in second and "Review until" in second
    assert 'data-countdown="1"' in html
    # terms in words
    terms = _text(_section(html, "h-terms"))
    assert "mean uptime ≥ 99.9 % per 1 day" in terms
    assert "p95 latency ≤ 300 ms per 1 day, at least 20 samples" in terms
    assert "KPI below standard in one period 5 % of the total (0.2 ETH)" in terms
    assert "Cap on all refunds 30 % of the total (1.2 ETH)" in terms
    assert "Review window after a delivery 3 days" in terms
    assert "Challenge window after a breach report 2 days" in terms
    assert "Arbitration window 5 days" in terms
    assert "To the provider 20 % 40 % 60 % 80 % 100 %" in terms
    assert "1. Service reachable" not in terms  # an <ol>: numbers come from the list itself
    assert "<li>Backups restored</li>" in html
    # the breach report
    breaches = _text(_section(html, "h-breaches"))
    assert "Report 0: KPI below standard in one period" in breaches
    assert "Reserved 0.2 ETH" in breaches and "reported, open to challenge" in breaches
    assert "Challenge until" in breaches
    assert f'href="/api/evidence/0x{"33" * 32}"' in html
    assert 'data-tx="challenge" data-args=\'{"breachId": 0}\'' in html
    # the KPI chart: one per KPI, period 1 failing
    kpis = _section(html, "h-kpis")
    assert kpis.count("<svg") == 2  # latency has no samples: its periods are missing
    assert 'data-kpi="p95_latency_ms"' in kpis and 'class="bar missing"' in kpis
    assert 'role="img"' in kpis and "<title id=" in kpis and "<desc id=" in kpis
    assert 'class="bar fail"' in kpis and 'class="threshold"' in kpis
    assert "Failing periods: 1." in _text(kpis) and "No failing period." in _text(kpis)
    # links
    assert f'href="/api/escrows/{escrow_id}/statement.csv"' in html
    assert f'href="/audit?escrow={escrow_id}"' in html
    assert f'href="/api/terms/0x{terms_hash(DOC).hex()}"' in html


def test_actions_are_offered_to_the_party_the_contract_would_accept_them_from(api: Api) -> None:
    env = api.env
    proposed = env.create(env.params((ETH,)))
    active = env.create_active(env.params((ETH, ETH)))
    env.deliver(active, 0)
    api.index()

    html = api.http.get(f"/escrows/{proposed}").text
    assert re.search(r'data-roles="provider" hidden>\s*<button[^>]*data-tx="accept"', html)
    assert re.search(r'data-roles="client" hidden>\s*<button[^>]*data-tx="cancel"', html)
    assert 'data-form="deliver"' not in html  # not accepted yet

    html = api.http.get(f"/escrows/{active}").text
    assert 'data-tx="accept"' not in html and 'data-tx="cancel"' not in html
    # milestone 0 delivered: the client reviews or disputes; milestone 1: the provider delivers
    assert f'href="/escrows/{active}/milestones/0/review"' in html
    assert 'data-form="dispute" data-milestone="0" data-roles="client"' in html
    dispute = html[html.index('data-form="dispute"'):]
    dispute = dispute[:dispute.index("</form>")]
    assert '<input id="dispute-files-0" name="files" type="file" multiple' in dispute
    assert "Your reason and files are stored by the service and shown to the arbiter" in dispute
    assert "not stored" not in dispute
    assert 'data-form="deliver" data-milestone="1" data-roles="provider"' in html
    assert 'data-form="deliver" data-milestone="0"' not in html
    assert 'data-tx="timeout"' not in html  # inside the review window

    env.advance(REVIEW + 10)  # the review window passed: only the timeout is left on milestone 0
    html = api.http.get(f"/escrows/{active}").text
    assert 'data-tx="timeout" data-args=\'{"milestone": 0}\'' in html
    assert 'data-form="dispute"' not in html and "/milestones/0/review" not in html

    env.advance(30 * DAY)  # past the delivery deadline: the client reclaims milestone 1
    html = api.http.get(f"/escrows/{active}").text
    assert 'data-form="deliver"' not in html
    assert re.search(r'data-roles="client" hidden>\s*<button[^>]*data-tx="reclaim"', html)
    assert "1 milestone was never delivered" in _text(html)


def test_a_stored_delivery_document_shows_its_note_photos_and_files(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,)))
    _delivery(api, escrow_id, 0, {"note": "Deployed <v2>\nSee the screenshots.", "attachments": [
        {"name": "home.png", "media_type": "image/png", "size": 10, "sha256": PHOTO},
        {"name": "notes.txt", "media_type": "text/plain", "size": 5, "sha256": PDF},
    ]})
    api.index()
    html = api.http.get(f"/escrows/{escrow_id}").text
    delivery = html[html.index('class="document delivery"'):]
    delivery = delivery[:delivery.index("</div>")]
    assert "Deployed &lt;v2&gt;\nSee the screenshots." in delivery
    assert f'<img src="/api/attachments/{PHOTO}" alt="home.png"' in delivery
    assert f'<a href="/api/attachments/{PDF}">notes.txt</a>' in delivery

    env.escrow.open_dispute(escrow_id, 0, None, env.client)  # the arbiter sees the same document
    api.index()
    desk = api.http.get(f"/arbiter?account={env.arbiter}").text
    assert "Deployed &lt;v2&gt;" in desk and 'alt="home.png"' in desk
    assert "The client gave no reason." in _text(desk)  # a zero reason hash


def _dispute(api: Api, escrow_id: int, milestone: int, document: dict[str, Any]) -> str:
    """Stores a dispute reason and opens the dispute with its hash, as `POST .../dispute` and
    the client's wallet do; the hash."""
    reason_hash = keccak(canonical_json(document))
    with api.services.sessions() as session, session.begin():
        session.add(MilestoneDocument(document_hash="0x" + reason_hash.hex(), kind="dispute",
                                      canonical=canonical_json(document).decode(), created_at=1))
    api.env.escrow.open_dispute(escrow_id, milestone, reason_hash, api.env.client)
    return "0x" + reason_hash.hex()


def test_a_stored_dispute_reason_shows_its_text_and_files_to_everyone_and_the_arbiter(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH, ETH)))
    env.deliver(escrow_id, 0)
    env.deliver(escrow_id, 1)
    reason_hash = _dispute(api, escrow_id, 0, {"reason": "Half the pages <missing>\nSee photo.",
                                               "attachments": [
        {"name": "blank.png", "media_type": "image/png", "size": 10, "sha256": PHOTO},
        {"name": "list.pdf", "media_type": "application/pdf", "size": 20, "sha256": PDF},
    ]})
    env.escrow.open_dispute(escrow_id, 1, b"\x77" * 32, env.client)  # a hash of no document
    api.index()

    html = api.http.get(f"/escrows/{escrow_id}").text
    first = html[html.index('id="milestone-0"'):html.index('id="milestone-1"')]
    dispute = first[first.index('class="document dispute"'):]
    dispute = dispute[:dispute.index("</div>")]
    assert "Dispute reason" in _text(dispute)
    assert "Half the pages &lt;missing&gt;\nSee photo." in dispute  # escaped, lines kept
    assert f'<img src="/api/attachments/{PHOTO}" alt="blank.png"' in dispute
    assert f'<a href="/api/attachments/{PDF}">list.pdf</a>' in dispute
    assert reason_hash not in first  # the document, not its hash
    second = html[html.index('id="milestone-1"'):]
    assert "Dispute reason hash" in _text(second) and f"0x{'77' * 32}" in second
    assert 'class="document dispute"' not in second

    desk = api.http.get(f"/arbiter?account={env.arbiter}").text
    at, end = desk.index(f'id="dispute-{escrow_id}-0"'), desk.index(f'id="dispute-{escrow_id}-1"')
    first = desk[at:end]
    assert "The client's reason" in _text(first)
    assert "Half the pages &lt;missing&gt;" in first
    assert 'alt="blank.png"' in first and f'href="/api/attachments/{PDF}">list.pdf</a>' in first
    second = desk[desk.index(f'id="dispute-{escrow_id}-1"'):]
    assert "No document stored; reference" in _text(second) and f"0x{'77' * 32}" in second


def test_an_escrow_without_an_arbiter_offers_no_dispute_or_challenge_and_says_so(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,), arbiter="0x" + "00" * 20))
    env.deliver(escrow_id, 0)
    env.escrow.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)
    api.index()
    html = api.http.get(f"/escrows/{escrow_id}").text
    assert 'data-form="dispute"' not in html
    assert 'data-tx="challenge"' not in html  # challengeBreach needs an arbiter
    assert f'href="/escrows/{escrow_id}/milestones/0/review"' in html
    assert "none: no disputes and no challenges" in _text(html)


def test_breach_windows_decide_challenge_finalize_and_the_arbiters_link(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH, ETH)))
    env.escrow.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)
    env.escrow.report_breach(escrow_id, 3, 0, b"\x45" * 32, env.oracle)
    env.escrow.challenge_breach(escrow_id, 1, env.provider)
    api.index()
    html = api.http.get(f"/escrows/{escrow_id}").text
    assert 'data-tx="finalize"' not in html  # the challenge window is open
    assert "challenged, with the arbiter" in _text(html)
    assert f'href="/arbiter?account={env.arbiter}"' in html

    env.advance(CHALLENGE + 10)
    html = api.http.get(f"/escrows/{escrow_id}").text
    assert 'data-tx="challenge"' not in html
    assert 'data-roles="anyone" hidden>\n          <button type="button" data-tx="finalize"' in html

    env.advance(ARBITRATION)
    html = api.http.get(f"/escrows/{escrow_id}").text
    assert 'data-tx="stale-breach" data-args=\'{"breachId": 1}\'' in html


def test_the_escrow_page_renders_in_russian(api: Api) -> None:
    escrow_id = _escrow_with_terms(api)
    api.env.deliver(escrow_id, 0)
    api.index()
    response = api.http.get(f"/escrows/{escrow_id}?lang=ru")
    assert response.status_code == 200
    assert '<html lang="ru">' in response.text
    assert "3 ETH" in _text(response.text)
    assert "1 день" in _text(response.text)  # durations in Russian


def test_the_arbiters_desk_and_the_auditor_render_in_russian(api: Api) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.deliver(escrow_id, 0)
    env.escrow.open_dispute(escrow_id, 0, None, env.client)
    api.index()
    for path in ("/arbiter", f"/arbiter?account={env.arbiter}", "/audit",
                 f"/audit?escrow={escrow_id}", "/audit?escrow=all"):
        response = api.http.get(path, params={"lang": "ru"})
        assert response.status_code == 200, path
        assert '<html lang="ru">' in response.text, path


def test_bad_escrow_ids_get_the_error_page_with_the_apis_status(api: Api) -> None:
    unknown = api.http.get("/escrows/999")
    assert unknown.status_code == 404
    assert 'data-error="not_found"' in unknown.text and "unknown escrow 999" in unknown.text
    assert api.http.get("/escrows/0").status_code == 404
    assert api.http.get(f"/escrows/{2**63}").status_code == 404
    word = api.http.get("/escrows/abc")
    assert word.status_code == api.http.get("/api/escrows/abc").status_code == 422
    assert 'class="error"' in word.text


# ------------------------------------------------------------------ the arbiter's desk


def test_without_an_account_the_arbiters_desk_asks_to_connect(api: Api) -> None:
    response = api.http.get("/arbiter")
    assert response.status_code == 200
    assert 'data-page="arbiter-connect"' in response.text
    assert '<script type="module" src="/static/js/arbiter.js">' in response.text


def test_the_arbiters_desk_lists_disputes_and_challenges_with_documents_and_deadlines(
    api: Api,
) -> None:
    env = api.env
    escrow_id = _escrow_with_terms(api)
    env.deliver(escrow_id, 0)
    env.escrow.open_dispute(escrow_id, 0, b"\x55" * 32, env.client)
    env.escrow.report_breach(escrow_id, 1, 0, b"\x66" * 32, env.oracle)
    env.escrow.challenge_breach(escrow_id, 0, env.provider)
    quiet = env.create_active(env.params((ETH,)))  # nothing to decide: not listed
    api.index()

    html = api.http.get(f"/arbiter?account={env.arbiter.lower()}").text
    text = _text(html)
    assert f'data-account="{env.arbiter}"' in html
    assert f"Escrow {escrow_id}" in text and f"Escrow {quiet}" not in text
    assert "Dispute on milestone 1 · 1 ETH" in text
    assert f"0x{'55' * 32}" in html  # the dispute's reason hash
    assert 'data-form="resolve-dispute"' in html and 'name="provider_percent"' in html
    assert f'href="/api/evidence/0x{"66" * 32}"' in html
    assert 'data-upheld="true"' in html and 'data-upheld="false"' in html
    assert text.count("Decide until") == 2

    env.advance(ARBITRATION + 10)  # too late for the arbiter: only the 50/50 split remains
    html = api.http.get(f"/arbiter?account={env.arbiter}").text
    assert 'data-form="resolve-dispute"' not in html and 'data-upheld' not in html
    assert "The arbitration window has passed" in _text(html)

    other = _text(api.http.get(f"/arbiter?account={env.provider}").text)
    assert "Nothing to decide" in other


def test_a_malformed_arbiter_account_gets_400(api: Api) -> None:
    response = api.http.get("/arbiter?account=0x12")
    assert response.status_code == 400 and 'data-error="malformed"' in response.text


# ------------------------------------------------------------------ the auditor


def test_the_auditor_shows_a_form_then_the_verdict_checks_chart_and_downloads(api: Api) -> None:
    env = api.env
    form = api.http.get("/audit")
    assert form.status_code == 200
    assert '<label for="audit-escrow"' in form.text and 'value="all"' in form.text

    escrow_id = env.create_active(env.params((ETH, ETH)))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    api.index()
    html = api.http.get(f"/audit?escrow={escrow_id}").text
    text = _text(html)
    assert f"Escrow {escrow_id}: consistent" in text
    for name in ("bytecode", "replay", "signatures", "payouts", "documents", "index"):
        assert f'data-check="{name}"' in html
    assert "<svg" in html  # the audit module's timeline chart
    assert f'href="/api/escrows/{escrow_id}/statement.csv"' in html
    # each party's ledger over all its escrows, where the command line's note used to be
    assert "No ledger download" not in text and "escrow ledger ADDRESS" not in text
    for role, account in (("client", env.client), ("provider", env.provider)):
        link = f'<a href="/api/accounts/{account}/ledger.csv" data-ledger="{role}">'
        assert link in html
        short = f"{account[:6]}…{account[-4:]}"
        assert f"Ledger of the {role} {short} over all its escrows (CSV)" in text
        assert api.http.get(f"/api/accounts/{account}/ledger.csv").status_code == 200

    everything = api.http.get("/audit?escrow=all").text
    assert "solvency" in everything and f'href="/audit?escrow={escrow_id}"' in everything


def test_the_auditor_refuses_an_unknown_escrow_with_404(api: Api) -> None:
    response = api.http.get("/audit?escrow=424242")
    assert response.status_code == 404 and "unknown escrow 424242" in response.text
    assert api.http.get("/audit?escrow=x1").status_code == 422


# ------------------------------------------------------------------ the KPI chart (pure)


def _point(period: int, value: float | None, verdict: str, closed: bool = True) -> KpiPoint:
    return KpiPoint(period, period * DAY, (period + 1) * DAY, closed, value, verdict, 5, 1)


TEXT = ChartText(title="latency <ms> per period", summary="p95 against the threshold")


def test_kpi_series_group_the_api_periods_per_kpi_in_order() -> None:
    body = {"periods": [
        {"period": p, "start": p * 10, "end": p * 10 + 10, "closed": p < 2, "verdict": "pass",
         "kpis": [
             {"id": "up", "aggregate": "mean", "op": ">=", "threshold": 99.9,
              "value": 99.0 + p, "verdict": "fail" if p == 0 else "pass", "samples": 3,
              "min_samples": 1},
             {"id": "lat", "aggregate": "p95", "op": "<=", "threshold": 300, "value": None,
              "verdict": "missing", "samples": 2, "min_samples": 20}]}
        for p in range(3)]}
    up, lat = kpi_series(body)
    assert (up.kpi, up.aggregate, up.op, up.threshold) == ("up", "mean", ">=", 99.9)
    assert [p.period for p in up.points] == [0, 1, 2]
    assert [p.period for p in up.failing] == [0]
    assert up.points[2].closed is False
    assert lat.points[0] == KpiPoint(0, 0, 10, True, None, "missing", 2, 20)
    assert kpi_series({"periods": []}) == []


def test_the_chart_draws_bars_a_threshold_line_and_marks_failing_and_missing_periods() -> None:
    series = KpiSeries("lat", "p95", "<=", 300.0, (
        _point(0, 250.0, "pass"), _point(1, 420.0, "fail"), _point(2, None, "missing"),
        _point(3, 100.0, "pass", closed=False)))
    svg = kpi_chart_svg(series, TEXT, chart_id="c1")
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" class="kpi-chart"')
    assert 'role="img" aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">latency &lt;ms&gt; per period</title>' in svg
    desc = re.search(r'<desc id="c1-desc">(.*?)</desc>', svg)
    assert desc is not None
    assert desc.group(1) == ("p95 against the threshold; threshold ≤ 300; Period 0: 250 (pass); "
                             "Period 1: 420 (fail); Period 2: no value (missing); "
                             "Period 3: 100 (pass, open)")
    assert svg.count('class="bar pass"') == 1 and svg.count('class="bar fail"') == 1
    assert svg.count('class="bar pass open"') == 1 and 'fill-opacity="0.45"' in svg
    assert svg.count('class="bar missing"') == 1
    assert svg.count('class="fail-mark"') == 1
    assert svg.count('class="threshold"') == 1
    assert "viewBox" in svg and "width=" not in svg.split(">", 1)[0]  # scales to its container
    # the threshold line sits where 300 is: below the failing bar's top, above the passing one
    line_y = float(re.search(r'class="threshold"[^>]*y1="([0-9.]+)"', svg).group(1))  # type: ignore[union-attr]
    fail_y = float(re.search(r'class="bar fail"[^>]*y="([0-9.]+)"', svg).group(1))  # type: ignore[union-attr]
    pass_y = float(re.search(r'class="bar pass"[^>]*y="([0-9.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert fail_y < line_y < pass_y


def test_the_chart_keeps_the_last_periods_and_says_how_many_it_left_out() -> None:
    points = tuple(_point(p, float(p), "pass") for p in range(MAX_POINTS + 5))
    svg = kpi_chart_svg(KpiSeries("n", "count", ">=", 0.0, points), TEXT, chart_id="c2")
    assert svg.count("<rect") == MAX_POINTS
    assert "5 earlier periods not drawn" in svg
    assert "Period 4:" not in svg and f"Period {MAX_POINTS + 4}:" in svg


def test_the_chart_handles_negative_values_a_flat_series_and_no_points() -> None:
    flat = kpi_chart_svg(KpiSeries("z", "sum", ">", 0.0, (_point(0, 0.0, "fail"),)), TEXT,
                         chart_id="c3")
    assert 'class="bar fail"' in flat and "nan" not in flat.lower()
    negative = kpi_chart_svg(KpiSeries("t", "min", ">=", -5.0, (_point(0, -10.0, "fail"),)),
                             TEXT, chart_id="c4")
    assert 'class="bar fail"' in negative and "nan" not in negative.lower()
    empty = kpi_chart_svg(KpiSeries("e", "mean", ">=", 1.0, ()), TEXT, chart_id="c5")
    assert "<rect" not in empty and 'class="threshold"' in empty


def test_the_pages_chart_call_escapes_template_words_once() -> None:
    series = KpiSeries("lat", "p95", "<=", 300.0, (_point(0, 250.0, "pass"),))
    svg = str(chart_markup(series, "c6", title=Markup("a &lt;b&gt; &amp; c"), summary="x <y>",
                     verdicts={"pass": Markup("ok")}))
    assert "<title id=\"c6-title\">a &lt;b&gt; &amp; c</title>" in svg
    assert "x &lt;y&gt;" in svg


def test_numbers_and_kpi_names_read_as_people_write_them() -> None:
    assert [number(v) for v in (300.0, 99.9, 0.000123, 1.5e20, -2.0)] == [
        "300", "99.9", "0.000123", "1.5e+20", "-2"]
    assert kpi_label("p95_latency_ms", "p95") == {"name": "latency", "unit": "ms"}
    assert kpi_label("uptime_pct", "mean") == {"name": "uptime", "unit": "%"}
    assert kpi_label("errors", "count") == {"name": "errors", "unit": ""}
    assert kpi_label("x", "mean", {"name": "Checkout time", "unit": "s"}) == {
        "name": "Checkout time", "unit": "s"}


def test_the_page_json_blocks_are_valid(api: Api) -> None:
    escrow_id = _escrow_with_terms(api)
    api.index()
    html = api.http.get(f"/escrows/{escrow_id}").text
    block = re.search(r'<script type="application/json" id="qe-page-messages">(.*?)</script>',
                      html, re.S)
    assert block is not None
    assert json.loads(block.group(1))["you"] == "you"
