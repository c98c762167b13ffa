"""The escrow page and the arbiter's desk in real headless Chromium, walked through the UI alone
with the parties' test wallets on the Hardhat node: the provider accepts a proposed escrow and
delivers milestone 1 with a note and a file; a breach report (sent straight to the chain by the
oracle) is challenged by the provider on the page and decided by the arbiter on /arbiter. Each
step leaves a screenshot; axe finds no serious or critical violation on either page; the escrow
page fits a 390 px wide phone."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from backend.canonical import terms_hash
from tests.support import ETH
from tests.web.support import BrowserSession, LiveService, Shots, assert_accessible, wait_until

DOC = {
    "version": 1,
    "title": "Website redesign",
    "period_seconds": 86_400,
    "kpis": [{"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300}],
    "acceptance_criteria": ["Pages load on a phone", "Every link works"],
}
EVIDENCE = "0x" + "5e" * 32


def png(width: int = 2, height: int = 2) -> bytes:
    """A small valid PNG (the attachment store detects the type from the bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    rows = b"".join(b"\x00" + b"\x1f\x5f\x8b" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def test_provider_accepts_delivers_and_challenges_and_the_arbiter_decides(
    live_service: LiveService,
    wallet_browser: Callable[..., BrowserSession],
    shot: Shots,
    tmp_path: Path,
) -> None:
    env = live_service.env
    live_service.api("POST", "/api/terms", 201, json=DOC)
    escrow_id = env.create(env.params((ETH, 2 * ETH), terms_hash=terms_hash(DOC)))
    wait_for = live_service.api

    provider = wallet_browser("provider", connected=True)
    page = provider.page
    # the indexer's poll, not the page, decides when the new escrow is known
    wait_until(page, lambda: live_service.http.get(f"/api/escrows/{escrow_id}").status_code
               == 200, message=f"escrow {escrow_id} indexed")
    page.goto(f"/escrows/{escrow_id}")
    accept = page.get_by_role("button", name="Accept the escrow")
    expect(accept).to_be_visible()  # shown to the provider only
    expect(page.locator("[data-party='provider'] .you-badge")).to_be_visible()
    expect(page.locator("#escrow-you")).to_have_text("You are the provider of this escrow.")
    expect(page.get_by_role("button", name="Cancel the escrow")).to_be_hidden()
    shot(page, "proposed")
    assert_accessible(page)

    accept.click()  # the page reloads once the service indexed the block
    form = page.locator("form[data-form='deliver'][data-milestone='0']")
    expect(form).to_be_visible()
    assert wait_for("GET", f"/api/escrows/{escrow_id}")["status"] == "active"
    shot(page, "accepted")

    deliver = form.get_by_role("button", name="Deliver milestone 1")
    deliver.click()  # nothing to deliver: the API's refusal shows next to the form
    expect(form.get_by_role("alert")).to_contain_text("a note or at least one attachment")
    assert len(provider.wallet.transactions) == 1  # only the accept was sent
    photo = tmp_path / "homepage.png"
    photo.write_bytes(png())
    form.get_by_label("Delivery note").fill("New homepage deployed to staging.")
    form.get_by_label("Files (optional)").set_input_files(str(photo))
    deliver.click()
    milestone = page.locator("#milestone-0")
    expect(milestone).to_have_attribute("data-state", "delivered")
    expect(milestone).to_contain_text("delivered, in review")
    expect(milestone).to_contain_text("Review until")
    # the stored delivery document (POST .../delivery) is shown with its file
    expect(milestone.locator(".delivery")).to_contain_text("New homepage deployed to staging.")
    expect(milestone.locator(".delivery img[alt='homepage.png']")).to_be_visible()
    delivered = wait_for("GET", f"/api/escrows/{escrow_id}")["milestones"][0]
    assert delivered["state"] == "delivered"
    assert delivered["delivery"]["note"] == "New homepage deployed to staging."
    assert [a["name"] for a in delivered["delivery"]["attachments"]] == ["homepage.png"]
    shot(page, "delivered")
    assert_accessible(page)

    # the oracle reports a breach straight on the chain; the provider challenges it on the page
    env.escrow.report_breach(escrow_id, 1, 0, EVIDENCE, env.oracle)
    wait_until(page, lambda: wait_for("GET", f"/api/escrows/{escrow_id}")["breaches"])
    page.reload()
    breach = page.locator("#breach-0")
    expect(breach).to_contain_text("reported, open to challenge")
    expect(breach.get_by_role("link", name="Evidence of report 0")).to_have_attribute(
        "href", f"/api/evidence/{EVIDENCE}")
    shot(page, "breach-reported")
    breach.get_by_role("button", name="Challenge report 0").click()
    expect(breach).to_have_attribute("data-state", "challenged")
    expect(breach).to_contain_text("Arbiter decides until")
    shot(page, "challenged")

    # the arbiter connects on /arbiter (no account in the address yet) and upholds the report
    arbiter = wallet_browser("arbiter")
    desk = arbiter.page
    desk.goto("/arbiter")
    desk.locator("main").get_by_role("button", name="Connect wallet").click()
    desk.wait_for_url(re.compile(r"/arbiter\?account=0x[0-9a-fA-F]{40}$"))
    case = desk.locator(f"article[data-escrow='{escrow_id}']")
    expect(case).to_contain_text("Challenged report 0")
    expect(case).to_contain_text("Decide until")
    uphold = case.get_by_role("button", name=re.compile(r"^Uphold: refund 0\.15 ETH"))
    expect(uphold).to_be_visible()
    shot(desk, "arbiter-desk")
    assert_accessible(desk)
    uphold.click()
    expect(desk.get_by_text("Nothing to decide")).to_be_visible()
    shot(desk, "arbiter-decided")
    breach_state = wait_for("GET", f"/api/escrows/{escrow_id}")["breaches"][0]
    assert (breach_state["state"], breach_state["outcome"]) == ("upheld", "upheld")
    assert breach_state["to_client"] == str(3 * ETH * 500 // 10_000)

    # the auditor agrees with what happened
    desk.goto(f"/audit?escrow={escrow_id}")
    expect(desk.get_by_role("heading", level=2)).to_have_text(f"Escrow {escrow_id}: consistent")
    expect(desk.locator("tr[data-check='payouts']")).to_contain_text("passed")
    shot(desk, "audit")
    assert_accessible(desk)

    # the escrow page on a phone: nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#breach-0")).to_contain_text("upheld by the arbiter")
    expect(page.locator("#escrow-you")).to_be_visible()  # the account chip is in the header too
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    shot(page, "phone")
    assert width <= 390, f"the page scrolls sideways: {width} px"
