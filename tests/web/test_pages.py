"""The dashboard (`GET /`): the connected account's escrows by role with what each party must do
next and until when, its credits with a Withdraw button, in the reader's language; bad input
gets the error page with the API's status."""

from __future__ import annotations

import re

from tests.api.support import Api
from tests.support import ETH, EscrowEnv


def _text(html: str) -> str:
    """The visible text, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_without_an_account_the_dashboard_asks_to_connect_a_wallet(api: Api) -> None:
    response = api.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-page="dashboard-connect"' in response.text
    assert "Connect your wallet to see your escrows" in _text(response.text)


def test_the_dashboard_lists_each_role_with_the_next_steps_and_amounts_in_token_units(
    api: Api, env: EscrowEnv
) -> None:
    first = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(first, 0)
    proposed = env.create(env.params((ETH // 2,)))
    api.index()

    client = _text(api.http.get(f"/?account={env.client.lower()}").text)  # any case
    assert f"Escrow {first}" in client and f"Escrow {proposed}" in client
    assert "Total 3 ETH" in client and "Total 0.5 ETH" in client
    assert "Review milestone 1 until" in client
    assert "Cancel while it is not accepted" in client
    assert "wei" not in client

    provider = _text(api.http.get(f"/?account={env.provider}").text)
    assert "Deliver milestone 2 until" in provider
    assert "Accept the escrow" in provider
    assert "Waiting for: client — Review milestone 1" in provider

    arbiter = _text(api.http.get(f"/?account={env.arbiter}").text)
    assert f"Escrow {first}" in arbiter and "arbiter" in arbiter

    stranger = _text(api.http.get(f"/?account={env.parties.stranger.address}").text)
    assert "No escrow names this account yet." in stranger


def test_credits_show_in_token_units_with_a_withdraw_button_for_the_token(
    api: Api, env: EscrowEnv
) -> None:
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    api.index()
    html = api.http.get(f"/?account={env.provider}").text
    assert "1 ETH" in _text(html)
    assert 'data-action="withdraw" data-token="0x0000000000000000000000000000000000000000"' in html


def test_a_malformed_account_gets_the_error_page_with_400_naming_it(api: Api) -> None:
    response = api.http.get("/?account=0x12")
    assert response.status_code == 400
    assert 'data-error="malformed"' in response.text
    assert "malformed account: &#39;0x12&#39; is not a 20-byte 0x address" in response.text


def test_the_dashboard_speaks_the_browsers_language_and_the_switch_is_remembered(
    api: Api, env: EscrowEnv
) -> None:
    russian = api.http.get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert russian.headers["content-language"] == "ru"
    assert '<html lang="ru">' in russian.text

    chosen = api.http.get("/?lang=es", headers={"Accept-Language": "ru"})
    assert chosen.headers["content-language"] == "es"
    assert "lang=es" in chosen.headers["set-cookie"]
    again = api.http.get("/", headers={"Accept-Language": "ru"})  # the cookie stays
    assert again.headers["content-language"] == "es"


def test_every_page_asset_is_served_by_the_app_itself(api: Api) -> None:
    html = api.http.get("/").text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(not u.startswith(("http:", "https:", "//")) for u in urls), urls
    for asset in ("/static/css/app.css", "/static/js/app.js", "/static/js/wallet.js",
                  "/static/favicon.svg"):
        assert api.http.get(asset).status_code == 200, asset
