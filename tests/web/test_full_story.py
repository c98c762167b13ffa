"""The whole story of one escrow, walked through the pages alone in real headless Chromium, one
browser context per party: the client builds and funds an ETH escrow (two milestones, a KPI, two
acceptance criteria) on /escrows/new; the provider accepts it and delivers milestone 1 with a note
and a photo on the escrow page; the client reviews it (rating, photo, criteria), signs, and the
relayer settles it; the oracle (the service's own key, so straight on the chain) reports a breach,
the provider challenges it on the escrow page and the arbiter rejects it on /arbiter; the provider
withdraws the credit on the dashboard; an auditor without a wallet finds the escrow consistent on
/audit. A screenshot at every step. Then the escrow page in Russian on a phone: translated, no
sideways scroll, and no serious or critical axe violation."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Browser, FilePayload, expect

from backend.canonical import terms_hash
from backend.i18n import translations
from tests.support import ETH
from tests.web.support import (
    PAGE_TIMEOUT_MS,
    BrowserSession,
    LiveService,
    Shots,
    assert_accessible,
    wait_until,
)

EVIDENCE = "0x" + "b7" * 32
PHONE = {"width": 390, "height": 844}


def png(rgb: tuple[int, int, int], width: int = 8, height: int = 8) -> bytes:
    """A small valid PNG of one colour (the attachment store detects the type from the bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def photo(name: str, rgb: tuple[int, int, int]) -> FilePayload:
    """A PNG as a file chosen in the page's file input."""
    return {"name": name, "mimeType": "image/png", "buffer": png(rgb=rgb)}


def indexed(live: LiveService, escrow_id: int) -> dict[str, Any]:
    """The indexed escrow (`{}` while the indexer has not seen it)."""
    response = live.http.get(f"/api/escrows/{escrow_id}")
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_an_escrow_from_creation_to_audit_through_the_pages(
    live_service: LiveService,
    wallet_browser: Callable[..., BrowserSession],
    chromium: Browser,
    shot: Shots,
) -> None:
    env = live_service.env

    # ------------------------------------------------------------ 1. the client creates
    client = wallet_browser("client", connected=True)
    page = client.page
    page.goto("/escrows/new")
    expect(page.locator("[data-page=new-escrow][data-ready]")).to_be_attached()
    expect(page.locator("#client-line")).to_contain_text(env.client.lower())
    page.get_by_label("Title: what the escrow is for").fill("Bakery website")
    page.get_by_label("Provider's address").fill(env.provider)
    page.get_by_label("Arbiter's address (optional)").fill(env.arbiter)
    page.get_by_label("Milestone 1 amount").fill("1")
    page.get_by_role("button", name="Add a milestone").click()
    page.get_by_label("Milestone 2 amount").fill("0.5")
    expect(page.locator("#total")).to_have_text("Total: 1.5 ETH")
    kpi = page.locator("#kpis li").first
    kpi.get_by_label("Name (as the samples are posted)").fill("uptime_pct")
    kpi.get_by_label("Threshold (in the KPI's unit)").fill("99.5")
    page.get_by_role("button", name="Add a criterion").click()
    page.get_by_label("Criterion 1", exact=True).fill("The order form sends an e-mail")
    page.get_by_role("button", name="Add a criterion").click()
    page.get_by_label("Criterion 2", exact=True).fill("The menu reads well on a phone")
    page.get_by_label("Delivery deadline").fill("2030-01-02T03:04")
    shot(page, "client terms filled")

    page.get_by_role("button", name="Create and fund the escrow").click()
    page.wait_for_url(re.compile(r"/escrows/\d+$"), timeout=20_000)
    escrow_id = int(page.url.rsplit("/", 1)[1])
    # the page waits for the service's index before it opens the escrow: no 404 on landing
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Escrow {escrow_id}")
    shot(page, "client landing")
    created = indexed(live_service, escrow_id)
    assert created["params"]["provider"] == env.provider
    assert created["params"]["milestoneAmounts"] == [str(ETH), str(ETH // 2)]
    assert created["terms_document"]["acceptance_criteria"] == [
        "The order form sends an e-mail", "The menu reads well on a phone"]
    assert created["terms_document"]["kpis"] == [
        {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.5}]
    shot(page, "client escrow page")

    # ------------------------------------------------------------ 2. the provider accepts, delivers
    provider = wallet_browser("provider", connected=True)
    ppage = provider.page
    ppage.goto(f"/escrows/{escrow_id}")
    expect(ppage.locator("#escrow-you")).to_have_text("You are the provider of this escrow.")
    accept = ppage.get_by_role("button", name="Accept the escrow")
    expect(accept).to_be_visible()
    shot(ppage, "provider proposed")
    accept.click()  # the page reloads once the service indexed the block
    form = ppage.locator("form[data-form='deliver'][data-milestone='0']")
    expect(form).to_be_visible()
    expect(ppage.locator(".escrow-head .status")).to_have_text("active")
    shot(ppage, "provider accepted")

    form.get_by_label("Delivery note").fill("Site live on staging, order form wired up.")
    form.get_by_label("Files (optional)").set_input_files(
        files=[photo("storefront.png", (40, 120, 90))])
    form.get_by_role("button", name="Deliver milestone 1").click()
    delivered = ppage.locator("#milestone-0")
    expect(delivered).to_have_attribute("data-state", "delivered")
    expect(delivered.locator(".delivery")).to_contain_text(
        "Site live on staging, order form wired up.")
    expect(delivered.locator(".delivery img[alt='storefront.png']")).to_be_visible()
    shot(ppage, "provider delivered")

    # ------------------------------------------------------------ 3. the client reviews and signs
    wait_until(page, lambda: indexed(live_service, escrow_id)["milestones"][0]["state"]
               == "delivered", message="the indexer has the delivery")
    page.reload()
    page.get_by_role("link", name="Review milestone 1").click()
    page.wait_for_url(f"**/escrows/{escrow_id}/milestones/0/review")
    expect(page.locator("[data-page=review][data-ready]")).to_be_attached()
    expect(page.locator("#signer-note")).to_contain_text("You are connected as the client")
    page.get_by_label("4 · Good").check()
    expect(page.locator("#payout")).to_have_text(
        "At rating 4 the provider receives 0.8 ETH and 0.2 ETH returns to you.")
    page.locator("#photos").set_input_files(
        files=[photo("checked.png", (200, 60, 40))])
    expect(page.locator("#previews li")).to_contain_text("Uploaded")
    criteria = page.locator("#criteria li")
    criteria.nth(0).get_by_label("Met", exact=True).check()
    criteria.nth(1).get_by_label("Not met").check()
    criteria.nth(1).get_by_label("Note (optional)").fill("The menu overflows on a small phone")
    page.get_by_label("Comment (optional)").fill("Good work; the phone layout needs a fix.")
    shot(page, "client review filled")

    page.get_by_role("button", name="Sign and submit").click()
    done = page.locator("#done")
    expect(done).to_be_visible(timeout=20_000)
    expect(done).to_contain_text(
        "Settled at rating 4: the provider was credited 0.8 ETH and 0.2 ETH returned to you.")
    expect(page.locator("#credit-text")).to_contain_text("The provider's credit is now 0.8 ETH")
    shot(page, "client settled")
    settled = indexed(live_service, escrow_id)["milestones"][0]
    assert (settled["state"], settled["how"], settled["rating"]) == ("settled", "signed", 4)
    assert settled["review"]["criteria"] == [
        {"index": 0, "met": True},
        {"index": 1, "met": False, "note": "The menu overflows on a small phone"}]
    assert [a["name"] for a in settled["review"]["attachments"]] == ["checked.png"]

    # ------------------------------------------------------------ 4. the oracle reports a breach
    env.escrow.report_breach(escrow_id, 1, 0, EVIDENCE, env.oracle)
    wait_until(page, lambda: indexed(live_service, escrow_id)["breaches"],
               message="the indexer has the breach report")

    # ------------------------------------------------------------ 5. the provider challenges it
    ppage.reload()
    breach = ppage.locator("#breach-0")
    expect(breach).to_contain_text("reported, open to challenge")
    shot(ppage, "provider breach reported")
    breach.get_by_role("button", name="Challenge report 0").click()
    expect(breach).to_have_attribute("data-state", "challenged")
    expect(breach).to_contain_text("Arbiter decides until")
    shot(ppage, "provider challenged")

    # ------------------------------------------------------------ 6. the arbiter rejects it
    arbiter = wallet_browser("arbiter", connected=True)
    desk = arbiter.page
    desk.goto(f"/arbiter?account={env.arbiter}")
    case = desk.locator(f"article[data-escrow='{escrow_id}']")
    expect(case).to_contain_text("Challenged report 0")
    reject = case.get_by_role("button", name=re.compile(r"^Reject: release 0\.075 ETH"))
    expect(reject).to_be_visible()
    shot(desk, "arbiter desk")
    reject.click()
    expect(desk.get_by_text("Nothing to decide")).to_be_visible()
    shot(desk, "arbiter decided")
    decided = indexed(live_service, escrow_id)["breaches"][0]
    assert (decided["state"], decided["outcome"]) == ("rejected", "rejected")

    # ------------------------------------------------------------ 7. the provider withdraws
    ppage.goto(f"/?account={env.provider.lower()}")
    credits = ppage.locator("ul.credits")
    expect(credits).to_contain_text("0.8 ETH")
    shot(ppage, "provider dashboard")
    before = env.w3.eth.get_balance(env.provider)
    ppage.get_by_role("button", name="Withdraw").click()  # mined, then the page reloads
    expect(ppage.get_by_role("button", name="Withdraw")).to_have_count(0, timeout=20_000)
    expect(credits).to_contain_text("0 ETH")
    assert env.escrow.credits(env.provider) == 0
    assert env.w3.eth.get_balance(env.provider) > before
    shot(ppage, "provider withdrawn")

    # ------------------------------------------------------------ 8. the auditor, without a wallet
    auditor = chromium.new_context(base_url=live_service.url, timezone_id="UTC",
                                   reduced_motion="reduce")
    try:
        auditor.set_default_timeout(PAGE_TIMEOUT_MS)
        audit = auditor.new_page()
        errors: list[str] = []
        audit.on("pageerror", lambda exc: errors.append(str(exc)))
        audit.goto(f"/audit?escrow={escrow_id}")
        expect(audit.get_by_role("heading", level=2)).to_have_text(
            f"Escrow {escrow_id}: consistent")
        expect(audit.locator("tr[data-check='payouts']")).to_contain_text("passed")
        shot(audit, "auditor consistent")
        assert_accessible(audit)
        assert not errors, f"auditor page errors: {errors}"
    finally:
        auditor.close()


def test_the_escrow_page_in_russian_on_a_phone(
    live_service: LiveService, wallet_browser: Callable[..., BrowserSession], shot: Shots
) -> None:
    env = live_service.env
    doc = {
        "version": 1, "title": "Сайт пекарни", "period_seconds": 86_400,
        "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.5}],
        "acceptance_criteria": ["Форма заказа отправляет письмо"],
    }
    live_service.api("POST", "/api/terms", 201, json=doc)
    escrow_id = env.create_active(env.params((ETH, ETH // 2), terms_hash=terms_hash(doc)))
    env.deliver(escrow_id, 0)

    client = wallet_browser("client", connected=True, locale="ru-RU", viewport=PHONE)
    page = client.page
    wait_until(page, lambda: indexed(live_service, escrow_id).get("milestones", [{}])[0].get(
        "state") == "delivered", message="the indexer has the delivery")
    page.goto(f"/escrows/{escrow_id}?lang=ru")
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Эскроу {escrow_id}")
    expect(page.locator("#h-parties")).to_have_text("Стороны")
    expect(page.locator("#h-milestones")).to_have_text("Этапы")
    breaches = translations("ru").gettext("Breach reports")  # as the catalogue has it
    assert breaches != "Breach reports"
    expect(page.locator("#h-breaches")).to_have_text(breaches)
    expect(page.locator("#milestone-0")).to_have_attribute("data-state", "delivered")
    you = page.locator("#escrow-you")  # the wallet is recognised: the page is fully set up
    expect(you).to_be_visible()
    expect(you).not_to_contain_text("You are")
    shot(page, "escrow ru phone")
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways: {width} px"
    assert_accessible(page)
