"""The client's story in a real browser on the live service: an ETH escrow with two milestones and
two acceptance criteria built on /escrows/new, funded from the test wallet and opened; after the
provider accepted and delivered (on the chain directly), the review page with a rating, a photo
from the "camera" and the criteria answered, signed, relayed and settled, with the provider's
credit shown. A refused signature is explained and the page stays usable; the review page in
Russian on a phone, where the second milestone is disputed with a reason and a photo that the
service stores and the escrow page and the arbiter's desk show. Screenshots of every step; axe on
the pages."""

from __future__ import annotations

import calendar
import re
import struct
import zlib
from typing import Any

from eth_utils import keccak
from playwright.sync_api import Page, expect

from backend.canonical import canonical_json
from tests.support import ETH
from tests.web.support import LiveService, Shots, assert_accessible, wait_until


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (30, 95, 139)) -> bytes:
    """A small valid PNG of one colour (what a phone's camera would hand over, only smaller)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def message(page: Page, key: str, block: str = "qe-page-messages") -> str:
    """A message of the page in its own language (the catalogue may not translate it yet)."""
    text: str = page.evaluate(
        "([id, key]) => JSON.parse(document.getElementById(id).textContent)[key]", [block, key]
    )
    return text


def milestone(live: LiveService, escrow_id: int, index: int) -> dict[str, Any]:
    """The indexed milestone (`{}` while the indexer has not seen the escrow)."""
    response = live.http.get(f"/api/escrows/{escrow_id}")
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["milestones"][index]
    return found


UNIT_CASES = """async () => {
  const m = await import("/static/js/new_escrow.js");
  const parse = (...args) => { try { return m.parseUnits(...args); } catch (e) { return e.kind; } };
  const abiString = "0x" + "20".padStart(64, "0") + "4".padStart(64, "0")
    + "54555344".padEnd(64, "0");  // "TUSD"
  return {
    eth: parse("1.5", 18, "."), micro: parse("0.000001", 6, "."), leading: parse(".5", 6, "."),
    russian: parse("1,5", 6, ","), grouped: parse("1 000,25", 2, ","),
    comma_in_english: parse("1,5", 6, "."), too_precise: parse("0.1234567", 6, "."),
    huge: parse("123456789012345678901234567890.123456789012345678", 18, "."),
    empty: parse("  ", 6, "."), exponent: parse("1e5", 6, "."), negative: parse("-1", 6, "."),
    two_separators: parse("1.000,5", 6, ","),
    en: m.formatUnits("1000500000000000000000", 18, "ETH", "en"),
    ru: m.formatUnits("2500000", 6, "TUSD", "ru"), zero: m.formatUnits("0", 6, "", "en"),
    symbol: m.decodeAbiString(abiString),
    bytes32: m.decodeAbiString("0x" + "4d4b52".padEnd(64, "0")),
    decimals: m.decodeAbiUint8("0x" + "6".padStart(64, "0")),
    no_code: m.decodeAbiUint8("0x"),
  };
}"""


def short(address: str) -> str:
    """An address as the pages abbreviate it (lower case: as the wallet reports it)."""
    return f"{address[:6]}…{address[-4:]}".lower()


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"
    ))


def test_the_client_creates_an_escrow_and_reviews_its_first_milestone(
    live_service: LiveService, wallet_browser: Any, shot: Shots
) -> None:
    env = live_service.env
    client = wallet_browser("client", connected=True)
    page = client.page

    # ---------------------------------------------------------------- the terms builder
    page.goto("/escrows/new")
    expect(page.locator("[data-page=new-escrow][data-ready]")).to_be_attached()
    expect(page.locator("#client-line")).to_contain_text(env.client.lower())
    expect(page.locator("#oracle")).to_have_value(env.oracle)  # the service's oracle
    shot(page, "new escrow")
    assert_accessible(page)
    # the page's unit conversions are exact (no floating point) and refuse what they cannot read
    assert page.evaluate(UNIT_CASES) == {
        "eth": "1500000000000000000", "micro": "1", "leading": "500000", "russian": "1500000",
        "grouped": "100025", "comma_in_english": "invalid", "too_precise": "too_many_decimals",
        "huge": "123456789012345678901234567890123456789012345678", "empty": "empty",
        "exponent": "invalid", "negative": "invalid", "two_separators": "invalid",
        "en": "1,000.5 ETH", "ru": "2,5 TUSD", "zero": "0", "symbol": "TUSD", "bytes32": "MKR",
        "decimals": 6, "no_code": None,
    }

    page.get_by_label("Title: what the escrow is for").fill("Shop website, phase 1")
    page.get_by_label("Provider's address").fill(env.provider)
    page.get_by_label("Arbiter's address (optional)").fill(env.arbiter)
    page.get_by_label("Milestone 1 amount").fill("1.5")
    page.get_by_role("button", name="Add a milestone").click()
    page.get_by_label("Milestone 2 amount").fill("0.25")
    expect(page.locator("#total")).to_have_text("Total: 1.75 ETH")
    page.get_by_role("button", name="Add a criterion").click()
    page.get_by_label("Criterion 1", exact=True).fill("The shop takes a test order")
    page.get_by_role("button", name="Add a criterion").click()
    page.get_by_label("Criterion 2", exact=True).fill("Pages load on a phone")
    # a payout table that decreases is explained next to it; fixed, the message goes
    page.get_by_label("Rating 4").fill("50.5")
    expect(page.locator("#payout-error")).to_contain_text("rating 4 pays less than rating 3")
    page.get_by_label("Rating 4").fill("80")
    expect(page.locator("#payout-error")).to_be_empty()
    page.get_by_label("Review period after each delivery", exact=True).fill("36")
    page.get_by_label("Unit of: Review period after each delivery").select_option(label="hours")
    page.get_by_label("Delivery deadline").fill("2030-01-02T03:04")  # the browser runs in UTC
    shot(page, "terms filled")

    page.get_by_role("button", name="Create and fund the escrow").click()
    page.wait_for_url(re.compile(r"/escrows/\d+$"), timeout=20_000)
    escrow_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Escrow {escrow_id}")
    shot(page, "escrow page")

    detail = wait_until(page, lambda: live_service.api("GET", f"/api/escrows/{escrow_id}"),
                        message="the indexer has the new escrow")
    assert detail["params"]["client"] == env.client
    assert detail["params"]["milestoneAmounts"] == [str(3 * ETH // 2), str(ETH // 4)]
    terms = detail["params"]["terms"]
    assert terms["ratingPayoutBps"] == [2000, 4000, 6000, 8000, 10000]
    assert (terms["reviewPeriod"], terms["challengePeriod"]) == (36 * 3600, 2 * 86400)
    assert terms["deliveryDeadline"] == calendar.timegm((2030, 1, 2, 3, 4, 0))
    assert (terms["breachRefundBps"], terms["streakRefundBps"], terms["incidentRefundBps"],
            terms["maxRefundBps"]) == (500, 1000, 0, 3000)
    assert detail["terms_document"]["acceptance_criteria"] == [
        "The shop takes a test order", "Pages load on a phone"]
    assert detail["terms_document"]["kpis"] == [
        {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}]

    # ---------------------------------------------------------------- the provider, on the chain
    env.escrow.accept(escrow_id, env.provider)
    env.deliver(escrow_id, 0)
    wait_until(page, lambda: milestone(live_service, escrow_id, 0).get("state") == "delivered",
               message="the indexer has the delivery")

    # ---------------------------------------------------------------- the review
    page.goto(f"/escrows/{escrow_id}/milestones/0/review")
    expect(page.locator("[data-page=review][data-ready]")).to_be_attached()
    expect(page.locator("dl.facts")).to_contain_text("1.5 ETH")
    expect(page.locator("#signer-note")).to_contain_text("You are connected as the client")
    shot(page, "review")
    assert_accessible(page)

    page.get_by_label("4 · Good").check()
    expect(page.locator("#payout")).to_have_text(
        "At rating 4 the provider receives 1.2 ETH and 0.3 ETH returns to you.")
    page.locator("#photos").set_input_files(
        files=[{"name": "shop.png", "mimeType": "image/png", "buffer": png()}])
    expect(page.locator("#previews li")).to_contain_text("Uploaded")
    expect(page.locator("#previews img")).to_have_attribute("alt", "Photo: shop.png")
    criteria = page.locator("#criteria li")
    criteria.nth(0).get_by_label("Met", exact=True).check()
    criteria.nth(1).get_by_label("Not met").check()
    criteria.nth(1).get_by_label("Note (optional)").fill("Slow on 3G")
    page.get_by_label("Comment (optional)").fill("Works; mobile needs care.")
    shot(page, "review filled")

    page.get_by_role("button", name="Sign and submit").click()
    done = page.locator("#done")
    expect(done).to_be_visible(timeout=20_000)
    expect(done).to_contain_text(
        "Settled at rating 4: the provider was credited 1.2 ETH and 0.3 ETH returned to you.")
    expect(page.locator("#credit-text")).to_contain_text("The provider's credit is now 1.2 ETH")
    expect(page.locator("#progress li[data-status=mined]")).to_have_class(re.compile("done"))
    expect(done.get_by_role("link", name=f"Back to escrow {escrow_id}")).to_be_visible()
    shot(page, "settled")

    settled = milestone(live_service, escrow_id, 0)
    assert (settled["how"], settled["rating"]) == ("signed", 4)
    review = settled["review"]
    assert review["comment"] == "Works; mobile needs care."
    assert [a["name"] for a in review["attachments"]] == ["shop.png"]
    assert review["criteria"] == [
        {"index": 0, "met": True}, {"index": 1, "met": False, "note": "Slow on 3G"}]


def test_a_refused_signature_is_explained_and_the_russian_phone_page_stays_usable(
    live_service: LiveService, wallet_browser: Any, shot: Shots
) -> None:
    env = live_service.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    env.deliver(escrow_id, 1)
    phone = {"width": 390, "height": 844}
    path = f"/escrows/{escrow_id}/milestones/0/review?lang=ru"

    # only the client may sign: the provider's wallet is told so and cannot
    provider = wallet_browser("provider", connected=True, locale="ru-RU", viewport=phone)
    wait_until(provider.page, lambda: milestone(live_service, escrow_id, 1).get("state")
               == "delivered", message="the indexer has the deliveries")
    provider.page.goto(path)
    expect(provider.page.locator("#signer-note")).to_have_text(
        message(provider.page, "not_client").replace(
            "%(account)s", short(env.provider)).replace("%(client)s", short(env.client)))
    expect(provider.page.locator("#sign")).to_be_disabled()
    expect(provider.page.locator("#dispute")).to_be_disabled()
    shot(provider.page, "provider may not sign")

    client = wallet_browser("client", connected=True, locale="ru-RU", viewport=phone)
    page = client.page
    page.goto(path)
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.locator("[data-page=review][data-ready]")).to_be_attached()
    shot(page, "review ru phone")
    assert no_horizontal_scroll(page)
    assert_accessible(page)

    page.locator("label[for=rating-3]").click()
    expect(page.locator("#payout")).to_contain_text("0,6 ETH")  # Russian decimals
    client.wallet.reject_next_signature = True
    page.locator("#sign").click()
    expect(page.locator("#review-error")).to_have_text(message(page, "rejected", "qe-messages"))
    expect(page.locator("#sign")).to_be_enabled()
    assert client.wallet.signatures == []
    assert milestone(live_service, escrow_id, 0).get("state") == "delivered"
    shot(page, "signature refused")
    assert no_horizontal_scroll(page)

    page.locator("#sign").click()  # the user signs this time
    expect(page.locator("#done")).to_be_visible(timeout=20_000)
    expect(page.locator("#review-error")).to_be_empty()
    shot(page, "settled ru phone")
    assert no_horizontal_scroll(page)
    assert milestone(live_service, escrow_id, 0)["rating"] == 3

    # the second milestone is disputed instead, with a reason and a photo stored for the arbiter
    page.goto(f"/escrows/{escrow_id}/milestones/1/review?lang=ru")
    expect(page.locator("[data-page=review][data-ready]")).to_be_attached()
    page.locator("#dispute").click()  # neither a reason nor a file: said, nothing sent
    expect(page.locator("#dispute-error")).to_have_text(message(page, "reason_needed"))
    assert client.wallet.transactions == []
    page.locator("#dispute-reason").fill("Половина страниц пуста")
    page.locator("#photos").set_input_files(
        files=[{"name": "blank.png", "mimeType": "image/png", "buffer": png(rgb=(250, 250, 250))}])
    expect(page.locator("#previews li")).to_contain_text(message(page, "uploaded"))
    page.locator("#dispute").click()
    expect(page.locator("#qe-status")).to_have_text(message(page, "disputed"))
    expect(page.locator("#sign")).to_be_disabled()
    expect(page.locator("#dispute-error")).to_be_empty()
    disputed = wait_until(page, lambda: (m := milestone(live_service, escrow_id, 1)).get(
        "state") == "disputed" and m, message="the indexer has the dispute")
    reason = disputed["dispute_reason"]
    assert reason["reason"] == "Половина страниц пуста"
    assert [a["name"] for a in reason["attachments"]] == ["blank.png"]
    assert disputed["dispute_reason_hash"] == "0x" + keccak(canonical_json(reason)).hex()
    shot(page, "disputed ru phone")

    # the escrow page and the arbiter's desk show the reason and its photo
    page.goto(f"/escrows/{escrow_id}?lang=ru")
    shown = page.locator("#milestone-1 .document.dispute")
    expect(shown).to_contain_text("Половина страниц пуста")
    expect(shown.locator("img")).to_have_attribute("alt", "blank.png")
    assert no_horizontal_scroll(page)
    shot(page, "escrow page with the reason ru phone")
    arbiter = wallet_browser("arbiter", connected=True, locale="ru-RU", viewport=phone)
    arbiter.page.goto(f"/arbiter?account={env.arbiter}")
    desk = arbiter.page.locator(f"#dispute-{escrow_id}-1").locator("xpath=..")
    expect(desk.locator(".document.dispute")).to_contain_text("Половина страниц пуста")
    expect(desk.locator(".document.dispute img")).to_have_attribute("alt", "blank.png")
    expect(desk.locator("form[data-form=resolve-dispute]")).to_be_visible()
    assert_accessible(arbiter.page)
    shot(arbiter.page, "arbiter sees the reason ru phone")


def test_an_erc20_escrow_is_approved_then_created_and_refusals_keep_the_form(
    live_service: LiveService, wallet_browser: Any, shot: Shots
) -> None:
    env = live_service.env
    env.contract("TestToken", env.token).functions.mint(env.client, 10**12).transact(
        {"from": env.parties.deployer.address})
    client = wallet_browser("client", connected=True, viewport={"width": 390, "height": 844})
    page = client.page
    page.goto("/escrows/new")
    expect(page.locator("[data-page=new-escrow][data-ready]")).to_be_attached()
    assert no_horizontal_scroll(page)  # the builder on a phone
    page.get_by_label("Title: what the escrow is for").fill("Support hours")
    page.get_by_label("Provider's address").fill(env.provider.lower())

    # the token's symbol and decimals, read through the wallet (eth_call)
    page.get_by_label("An ERC-20 token").check()
    page.get_by_label("Token contract address").fill(env.token)
    page.get_by_label("Token contract address").press("Tab")
    expect(page.locator("#token-info")).to_have_text("TUSD: 6 decimals")
    expect(page.locator("[data-token-symbol]").first).to_have_text("TUSD")
    assert any(r.method == "eth_call" for r in client.wallet.requests)

    # more decimals than the token has: refused next to the field, nothing sent
    page.get_by_label("Milestone 1 amount").fill("2.1234567")
    page.get_by_role("button", name="Create and fund the escrow").click()
    expect(page.locator("#milestone-1-error")).to_have_text(
        "This token has 6 decimals: write at most 6 digits after the separator.")
    expect(page.get_by_label("Milestone 1 amount")).to_be_focused()
    # a total the contract cannot hold passes the page but not the API: its detail shows
    page.get_by_label("Milestone 1 amount").fill("6000000000000000000000000000")
    expect(page.locator("#milestone-1-error")).to_be_empty()
    page.get_by_role("button", name="Create and fund the escrow").click()
    expect(page.locator("#form-error")).to_contain_text(
        "The service refused the escrow: milestone_amounts")
    expect(page.locator("#form-error")).to_contain_text("below 2^112")
    expect(page.get_by_label("Title: what the escrow is for")).to_have_value("Support hours")
    assert client.wallet.transactions == []
    shot(page, "refused by the API")
    assert no_horizontal_scroll(page)

    page.get_by_label("Milestone 1 amount").fill("2.5")
    expect(page.locator("#total")).to_have_text("Total: 2.5 TUSD")
    page.get_by_role("button", name="Create and fund the escrow").click()
    page.wait_for_url(re.compile(r"/escrows/\d+$"), timeout=20_000)
    escrow_id = int(page.url.rsplit("/", 1)[1])
    assert len(client.wallet.transactions) == 2  # approve, then the creation
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Escrow {escrow_id}")
    shot(page, "created")
    detail = wait_until(
        page, lambda: live_service.http.get(f"/api/escrows/{escrow_id}").json().get("params"))
    assert detail["token"] == env.token
    assert detail["milestoneAmounts"] == ["2500000"]
