"""The dashboard in real headless Chromium: a client without a connected wallet is asked to
connect, connecting opens the account's dashboard with its escrows by role and the next steps
counting down; the provider withdraws a credit with the Withdraw button and the credit is gone;
a wallet on another network gets a banner with a working "Switch network" button; the page fits
a phone and axe finds no serious or critical violation."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Browser, expect

from tests.support import ETH
from tests.web.support import BrowserSession, LiveService, Shots, assert_accessible


def test_connecting_opens_the_dashboard_and_the_provider_withdraws_a_credit(
    live_service: LiveService, wallet_browser: Callable[..., BrowserSession], shot: Shots
) -> None:
    env = live_service.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    env.deliver(escrow_id, 1)
    provider = wallet_browser("provider")
    page = provider.page
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Pay for a service")
    shot(page, "not-connected")
    page.get_by_role("button", name="Connect wallet").click()
    page.wait_for_url(f"**/?account={env.provider.lower()}")
    card = page.locator(f"[data-escrow='{escrow_id}']")
    expect(card).to_contain_text("provider")
    expect(card).to_contain_text("Waiting for: client — Review milestone 2")
    expect(card.locator("time[data-countdown]")).to_contain_text("left")
    expect(page.locator("#qe-account")).to_be_visible()
    expect(page.locator("#qe-connect")).to_be_hidden()
    expect(page.locator("ul.credits")).to_contain_text("1 ETH")
    shot(page, "dashboard")
    assert_accessible(page)

    before = env.w3.eth.get_balance(env.provider)
    page.get_by_role("button", name="Withdraw").click()  # mined, then the page reloads
    expect(page.get_by_role("button", name="Withdraw")).to_have_count(0, timeout=20_000)
    expect(page.locator("ul.credits")).to_contain_text("0 ETH")
    assert env.escrow.credits(env.provider) == 0
    assert env.w3.eth.get_balance(env.provider) > before  # 1 ETH in, minus gas
    shot(page, "withdrawn")


def test_a_wallet_on_another_network_is_asked_to_switch_and_the_phone_page_fits(
    live_service: LiveService, wallet_browser: Callable[..., BrowserSession], shot: Shots
) -> None:
    env = live_service.env
    env.create_active()
    client = wallet_browser("client", chain_id=1, connected=True,
                            viewport={"width": 390, "height": 844})
    page = client.page
    page.goto(f"/?account={env.client}")
    banner = page.locator("#qe-banner")
    expect(banner).to_contain_text("another network")
    shot(page, "wrong-network")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    banner.get_by_role("button", name="Switch network").click()
    expect(banner).to_be_hidden(timeout=10_000)  # chainChanged reloads the page
    shot(page, "switched")
    assert_accessible(page)


def test_without_any_wallet_connecting_says_how_to_get_one_and_the_page_stays_usable(
    live_service: LiveService, chromium: Browser, shot: Shots
) -> None:
    context = chromium.new_context(base_url=live_service.url)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("/")
        page.get_by_role("button", name="Connect wallet").click()
        expect(page.locator("#qe-banner")).to_contain_text("No wallet found", timeout=5_000)
        shot(page, "no-wallet")
        page.get_by_role("link", name="New escrow").first.click()  # still usable
        expect(page).to_have_url(f"{live_service.url}/escrows/new")
        assert errors == []
    finally:
        context.close()
