"""The client's pages that create and review, as the server renders them: the terms builder
(`GET /escrows/new`) with the service's oracle filled in and every choice the terms model allows,
and the review of a milestone (`GET /escrows/{id}/milestones/{m}/review`) with the amount in the
token's units, the review deadline, the acceptance criteria and the upload inputs; the states in
which there is nothing to review; Russian; bad ids get the error page with the API's status."""

from __future__ import annotations

import json
import re
from typing import Any

from backend.chain.types import ZERO_ADDRESS
from backend.confirmations.reviews import MAX_ATTACHMENTS, MAX_COMMENT_CHARS
from backend.oracle.terms import AGGREGATES, OPERATORS
from backend.web.render import iso_time
from tests.api.support import Api
from tests.support import DAY, ETH, REVIEW, EscrowEnv

#: the smallest valid PNG header an upload is sniffed by
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
CRITERIA = ["The shop takes a test order", "Pages load on a phone"]
TERMS = {"version": 1, "title": "Shop website", "period_seconds": DAY,
         "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
         "acceptance_criteria": CRITERIA}


def _text(html: str) -> str:
    """The visible text, whitespace collapsed (scripts left out)."""
    html = re.sub(r"<script[^>]*>.*?</script>", " ", html, flags=re.S)
    html = re.sub(r"<template[^>]*>.*?</template>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _json_block(html: str, block: str) -> Any:
    found = re.search(rf'<script type="application/json" id="{block}">(.*?)</script>', html, re.S)
    assert found, block
    return json.loads(found.group(1))


def _created(api: Api, amounts: list[str], *, token: str | None = None,
             arbiter: str | None = None, terms: dict[str, Any] | None = None) -> int:
    """An escrow prepared by the API with a stored terms document and sent by the client, as the
    builder does; its id."""
    env = api.env
    body: dict[str, Any] = {
        "client": env.client, "provider": env.provider, "oracle": env.oracle,
        "milestone_amounts": amounts, "terms_document": terms or TERMS,
        "rules": {"rating_payout_bps": [2000, 4000, 6000, 8000, 10000],
                  "breach_refund_bps": 500, "streak_refund_bps": 0, "incident_refund_bps": 0,
                  "max_refund_bps": 3000, "review_period": REVIEW, "challenge_period": 2 * DAY,
                  "arbitration_period": 5 * DAY, "delivery_deadline": env.now() + 30 * DAY},
    }
    if arbiter is not None:
        body["arbiter"] = arbiter
    if token is not None:
        body["token"] = token
        total = sum(int(a) for a in amounts)
        env.contract("TestToken", token).functions.mint(env.client, total).transact(
            {"from": env.parties.deployer.address})
    prepared = api.ok("POST", "/api/escrows/prepare", json=body)
    if prepared["approve"]:
        api.send(env.client, prepared["approve"])
    api.send(env.client, prepared["tx"])
    return env.escrow.escrow_count()  # ids count up: the one just created


# ---------------------------------------------------------------------- the terms builder


def test_the_builder_offers_what_the_terms_model_and_the_contract_allow(api: Api) -> None:
    response = api.http.get("/escrows/new")
    assert response.status_code == 200
    html = response.text
    assert 'data-page="new-escrow"' in html
    assert '<script type="module" src="/static/js/new_escrow.js"></script>' in html
    # the service's oracle is filled in; no arbiter is configured
    assert re.search(rf'id="oracle"[^>]*value="{api.env.oracle}"', html)
    assert re.search(r'id="arbiter"[^>]*value=""', html)
    # every aggregate and operator of the one terms model, and nothing else
    aggregates = re.search(r'<select id="kpi-1-aggregate".*?</select>', html, re.S)
    assert aggregates and re.findall(r'value="([^"]+)"', aggregates.group(0)) == list(AGGREGATES)
    operators = re.search(r'<select id="kpi-1-op".*?</select>', html, re.S)
    assert operators
    assert [o.replace("&gt;", ">").replace("&lt;", "<")
            for o in re.findall(r'value="([^"]+)"', operators.group(0))] == list(OPERATORS)
    text = _text(html)
    for words in ("Provider's address", "Milestone 1 amount", "Payout by rating", "Rating 5",
                  "Acceptance criteria", "Period length", "A KPI below standard in a period",
                  "Underperformance in consecutive periods", "Major incident",
                  "Cap on all refunds together", "Review period after each delivery",
                  "Challenge period of a breach report", "Arbitration period",
                  "Delivery deadline", "Create and fund the escrow"):
        assert words in text, words
    assert 'type="datetime-local"' in html
    assert html.count('<option value="86400"') == 5  # five durations with hours/days
    payouts = re.findall(r'id="payout-\d"[^>]*value="(\d+)"', html)
    assert payouts == ["20", "40", "60", "80", "100"]
    # rows added by the script come from templates rendered here (translated)
    for template in ("milestone-template", "kpi-template", "criterion-template"):
        assert f'<template id="{template}">' in html
    data = _json_block(html, "qe-page-data")
    assert data["native"] == {"symbol": "ETH", "decimals": 18}
    assert data["bps"] == 10_000
    assert data["default_min_samples"]["p95"] == 20
    messages = _json_block(html, "qe-page-messages")
    assert messages["milestone_label"] == "Milestone %(n)s amount"
    assert messages["payout_five"] == "Rating 5 must pay 100 %."


def test_the_builder_offers_the_services_default_arbiter(api: Api) -> None:
    api.services.settings.default_arbiter = api.env.arbiter
    html = api.http.get("/escrows/new").text
    assert re.search(rf'id="arbiter"[^>]*value="{api.env.arbiter}"', html)


def test_the_builder_renders_in_russian_and_spanish(api: Api) -> None:
    for lang in ("ru", "es"):
        response = api.http.get(f"/escrows/new?lang={lang}")
        assert response.status_code == 200
        assert response.headers["content-language"] == lang
        assert f'<html lang="{lang}">' in response.text
        _json_block(response.text, "qe-page-messages")  # still valid JSON


# ---------------------------------------------------------------------- the review page


def test_the_review_page_shows_the_delivery_deadline_criteria_and_upload_inputs(
    api: Api,
) -> None:
    env = api.env
    escrow_id = _created(api, [str(3 * ETH // 2), str(ETH)], arbiter=env.arbiter)
    env.escrow.accept(escrow_id, env.provider)
    env.deliver(escrow_id, 0)
    api.index()
    delivered_at = api.ok("GET", f"/api/escrows/{escrow_id}")["milestones"][0]["delivered_at"]

    response = api.http.get(f"/escrows/{escrow_id}/milestones/0/review")
    assert response.status_code == 200
    html, text = response.text, _text(response.text)
    assert "Review milestone 1" in text
    assert "Amount 1.5 ETH" in text
    assert "wei" not in text
    assert "Shop website" in text
    # the review deadline counts down from the delivery plus the review period
    deadline = iso_time(delivered_at + REVIEW)
    assert f'<time datetime="{deadline}" data-countdown="1">' in html
    # a rating 1..5 with labels and the share each pays
    assert re.findall(r'type="radio" id="rating-(\d)" name="rating"', html) == list("12345")
    assert "4 · Good" in text and "provider gets 80 %" in text
    # one met / not met question per criterion, in the terms' order
    assert [c for c in CRITERIA if c in text] == CRITERIA
    assert text.index(CRITERIA[0]) < text.index(CRITERIA[1])
    assert html.count('value="met"') == 2 and html.count('value="not-met"') == 2
    # comment bounded by the limit; photos from the camera or gallery, and PDFs
    assert f'maxlength="{MAX_COMMENT_CHARS}"' in html
    assert ('<input id="photos" type="file" accept="image/*" capture="environment" multiple'
            in html)
    assert '<input id="pdfs" type="file" accept="application/pdf" multiple' in html
    assert "Sign and submit" in text
    assert "Open a dispute" in text  # the escrow has an arbiter
    # the dispute's reason (and the files attached above) are stored for the arbiter
    assert "empty reason hash" not in text
    assert ("Your reason and the photos and files attached above are stored by the service and "
            "shown to the arbiter") in text
    assert re.search(r'<textarea id="dispute-reason" maxlength="2000"', html)
    assert '<p class="form-error" id="dispute-error" role="alert"></p>' in html
    assert _json_block(html, "qe-page-messages")["reason_needed"] == (
        "Give a reason or attach a file for the arbiter.")
    data = _json_block(html, "qe-page-data")
    assert data["escrow_id"] == escrow_id and data["milestone"] == 0
    assert data["client"] == env.client and data["provider"] == env.provider
    assert data["token"] == {"address": ZERO_ADDRESS, "symbol": "ETH", "decimals": 18}
    assert data["criteria"] == 2
    assert data["reviewable"] is True
    assert data["limits"]["max_attachments"] == MAX_ATTACHMENTS


def test_the_providers_delivery_document_is_shown_with_its_files(api: Api) -> None:
    env = api.env
    escrow_id = _created(api, [str(ETH)])
    env.escrow.accept(escrow_id, env.provider)
    api.index()
    photo = api.ok("POST", "/api/attachments", 201,
                   files={"file": ("front page.png", PNG, "image/png")})
    act = api.ok("POST", "/api/attachments", 201,
                 files={"file": ("act.pdf", b"%PDF-1.4 signed act", "application/pdf")})
    delivery = api.ok("POST", f"/api/escrows/{escrow_id}/milestones/0/delivery",
                      json={"note": "Live at https://shop.example <b>now</b>",
                            "attachments": [photo["sha256"], act["sha256"]]})
    api.send(env.provider, delivery["tx"])
    api.index()
    html = api.http.get(f"/escrows/{escrow_id}/milestones/0/review").text
    text = _text(html)
    assert "Live at https://shop.example <b>now</b>" not in html  # escaped
    assert "Live at https://shop.example &lt;b&gt;now&lt;/b&gt;" in html
    assert f'<a href="/api/attachments/{photo["sha256"]}">' in html
    assert f'<img src="/api/attachments/{photo["sha256"]}" alt=""' in html  # a thumbnail
    assert "front page.png" in text and "act.pdf (application/pdf)" in text
    assert html.count("<img ") == 1  # the PDF is a link, not a picture


def test_a_token_escrow_is_reviewed_in_the_tokens_units_in_russian(api: Api) -> None:
    env = api.env
    escrow_id = _created(api, ["2500000"], token=env.token)
    env.escrow.accept(escrow_id, env.provider)
    env.deliver(escrow_id, 0)
    api.index()
    response = api.http.get(f"/escrows/{escrow_id}/milestones/0/review?lang=ru")
    assert response.status_code == 200
    assert response.headers["content-language"] == "ru"
    text = _text(response.text)
    assert "2,5 TUSD" in text
    # no arbiter: the page says why there is no dispute
    assert 'id="dispute"' not in response.text
    data = _json_block(response.text, "qe-page-data")
    assert data["token"]["decimals"] == 6 and data["criteria"] == 2


def test_without_stored_terms_there_are_no_criteria_to_answer(api: Api, env: EscrowEnv) -> None:
    escrow_id = env.create_active(env.params((ETH,)))
    env.deliver(escrow_id, 0)
    api.index()
    html = api.http.get(f"/escrows/{escrow_id}/milestones/0/review").text
    assert 'id="criteria"' not in html
    assert _json_block(html, "qe-page-data")["criteria"] == 0
    assert 'id="review-form"' in html


def test_nothing_to_review_before_delivery_after_settlement_or_the_window(
    api: Api, env: EscrowEnv
) -> None:
    escrow_id = env.create_active(env.params((ETH, 2 * ETH, 3 * ETH)))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 4, None, env.client)
    env.deliver(escrow_id, 1)
    api.index()

    def page(m: int) -> str:
        response = api.http.get(f"/escrows/{escrow_id}/milestones/{m}/review")
        assert response.status_code == 200
        assert 'id="review-form"' not in response.text
        assert _json_block(response.text, "qe-page-data")["reviewable"] is False
        return _text(response.text)

    settled = page(0)
    assert ("This milestone is settled: the provider received 0.8 ETH and 0.2 ETH returned to "
            "the client.") in settled
    assert "Rating: 4 of 5." in settled
    assert "has not been delivered yet" in page(2)
    env.advance(REVIEW + 2)  # eth-tester mines at latest + seconds - 1
    api.index()
    assert "The review window of this milestone has closed" in page(1)


def test_a_proposed_escrow_cannot_be_reviewed(api: Api, env: EscrowEnv) -> None:
    escrow_id = env.create(env.params((ETH,)))
    api.index()
    text = _text(api.http.get(f"/escrows/{escrow_id}/milestones/0/review").text)
    assert "This escrow is not active" in text


def test_bad_ids_get_the_error_page_with_the_apis_status(api: Api, env: EscrowEnv) -> None:
    escrow_id = env.create_active(env.params((ETH,)))
    api.index()
    cases = {
        f"/escrows/{escrow_id}/milestones/1/review": (404, "unknown milestone 1 of escrow"),
        f"/escrows/{escrow_id}/milestones/64/review": (404, "unknown milestone 64"),
        "/escrows/999/milestones/0/review": (404, "unknown escrow 999"),
        "/escrows/0/milestones/0/review": (404, "unknown escrow 0"),
        "/escrows/abc/milestones/0/review": (422, "escrow_id"),
        f"/escrows/{escrow_id}/milestones/x/review": (422, "milestone"),
    }
    for path, (status, words) in cases.items():
        response = api.http.get(path)
        assert response.status_code == status, path
        assert "This cannot be shown" in response.text, path
        assert words in _text(response.text), path


def test_the_pages_assets_are_served(api: Api) -> None:
    for asset in ("/static/js/new_escrow.js", "/static/js/review.js", "/static/css/forms.css"):
        response = api.http.get(asset)
        assert response.status_code == 200, asset
