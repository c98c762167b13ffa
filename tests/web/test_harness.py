"""The page-test harness itself, on a test-only page served at the live service's origin
(`page.route`, so the page talks to the real app as the service's own pages do): EIP-6963
discovery, accounts, chain, signatures recovered in Python, a mined transaction, refusals, chain
and account switches, two parties at once, axe-core and screenshots."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from playwright.sync_api import Browser, Page

from backend.chain.node import HardhatNode
from tests.confirmations.support import settled_events
from tests.web.support import BrowserSession, LiveService, Shots, assert_accessible, axe, wait_until
from tests.web.wallet import RDNS, NodeRpc, TestWallet

HARDHAT = "0x7a69"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

HARNESS_HTML = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Wallet harness</title></head>
<body>
<main>
  <h1>Wallet harness</h1>
  <p id="status">Loaded</p>
</main>
<script>
  window.harness = {
    wallets: [],
    events: [],
    provider(rdns) {
      const found = rdns ? harness.wallets.find((w) => w.info.rdns === rdns) : harness.wallets[0];
      return found && found.provider;
    },
    async call(method, params, rdns) {
      try {
        return {result: await harness.provider(rdns).request({method, params})};
      } catch (error) {
        return {error: {code: error.code, message: error.message, data: error.data,
                        isError: error instanceof Error}};
      }
    },
  };
  window.addEventListener("eip6963:announceProvider", (event) => {
    const {info, provider} = event.detail;
    if (harness.wallets.some((w) => w.info.uuid === info.uuid)) return;
    harness.wallets.push({info, provider});
    for (const name of ["accountsChanged", "chainChanged"]) {
      provider.on(name, (payload) => harness.events.push([info.rdns, name, payload]));
    }
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
</script>
</body>
</html>"""


def open_harness(live: LiveService, page: Page) -> Page:
    """The harness page at `<live service>/__harness`, once it has found a wallet."""
    page.route(
        f"{live.url}/__harness",
        lambda route: route.fulfill(content_type="text/html; charset=utf-8", body=HARNESS_HTML),
    )
    page.goto("/__harness")
    page.wait_for_function("() => harness.wallets.length > 0")
    return page


def call(page: Page, method: str, params: Any = None, rdns: str = RDNS) -> dict[str, Any]:
    """`provider.request` in the page: `{"result": ...}` or `{"error": {code, message, ...}}`."""
    reply: dict[str, Any] = page.evaluate(
        "([m, p, r]) => harness.call(m, p, r)", [method, [] if params is None else params, rdns]
    )
    return reply


def result(page: Page, method: str, params: Any = None) -> Any:
    reply = call(page, method, params)
    assert "error" not in reply, reply
    return reply["result"]


def events(page: Page) -> list[list[Any]]:
    found: list[list[Any]] = page.evaluate("() => harness.events")
    return found


def error_code(reply: dict[str, Any]) -> int:
    assert "error" in reply, reply
    assert reply["error"]["isError"], reply  # a ProviderRpcError is an Error
    code: int = reply["error"]["code"]
    return code


def personal_sign(page: Page, address: str, text: str) -> str:
    return str(result(page, "personal_sign", ["0x" + text.encode().hex(), address]))


def test_the_page_finds_the_wallet_through_eip6963_and_as_window_ethereum(
    live_service: LiveService, wallet_browser: Any
) -> None:
    page = open_harness(live_service, wallet_browser("client").page)
    wallets = page.evaluate("() => harness.wallets.map((w) => w.info)")
    assert len(wallets) == 1
    info = wallets[0]
    assert (info["name"], info["rdns"]) == ("Test Wallet", RDNS)
    assert UUID4.match(info["uuid"])
    assert info["icon"].startswith("data:image/svg+xml;base64,")
    assert page.evaluate("() => window.ethereum === harness.wallets[0].provider")
    assert page.evaluate("() => Object.isFrozen(harness.wallets[0].info)")
    # it answers every later request for providers, with the same uuid for the page's life
    page.evaluate("() => { window.again = [];"
                  " addEventListener('eip6963:announceProvider', (e) => again.push(e.detail));"
                  " dispatchEvent(new Event('eip6963:requestProvider')); }")
    assert page.evaluate("() => again.map((d) => d.info.uuid)") == [info["uuid"]]


def test_two_extensions_are_announced_and_the_page_can_pick_either(
    live_service: LiveService, wallet_browser: Any
) -> None:
    page = open_harness(live_service, wallet_browser("client", decoy=True).page)
    infos = page.evaluate("() => harness.wallets.map((w) => w.info)")
    assert sorted(i["name"] for i in infos) == ["Other Wallet", "Test Wallet"]
    assert len({i["uuid"] for i in infos}) == 2
    # the decoy left window.ethereum to the test wallet; asking the decoy is a user's refusal
    assert page.evaluate(f"() => window.ethereum === harness.provider('{RDNS}')")
    assert error_code(call(page, "eth_requestAccounts", rdns="com.example.otherwallet")) == 4001
    assert result(page, "eth_requestAccounts") == [live_service.env.client.lower()]


def test_the_wallet_announces_itself_when_it_loads(
    chromium: Browser, live_service: LiveService, hardhat_node: HardhatNode
) -> None:
    """EIP-6963: an announcement at load, caught by a listener that is there before it."""
    wallet = TestWallet(NodeRpc(hardhat_node.url), live_service.env.parties.client)
    context = chromium.new_context(base_url=live_service.url)
    try:
        context.add_init_script(script="window.heard = []; addEventListener("
                                "'eip6963:announceProvider', (e) => heard.push(e.detail.info));")
        wallet.install(context)
        page = context.new_page()
        page.route(f"{live_service.url}/empty", lambda route: route.fulfill(body="<p>empty</p>"))
        page.goto("/empty")
        assert [i["rdns"] for i in page.evaluate("() => heard")] == [RDNS]
    finally:
        context.close()
        wallet.node.close()


def test_accounts_chain_and_reads_go_through_the_wallet(
    live_service: LiveService, wallet_browser: Any
) -> None:
    env = live_service.env
    session: BrowserSession = wallet_browser("client")
    page = open_harness(live_service, session.page)
    client = env.client.lower()
    assert result(page, "eth_accounts") == []  # nothing exposed before the user connects
    assert error_code(call(page, "personal_sign", ["0x00", client])) == 4100
    assert result(page, "eth_requestAccounts") == [client]
    assert result(page, "eth_accounts") == [client]
    assert events(page) == [[RDNS, "accountsChanged", [client]]]
    assert result(page, "eth_chainId") == HARDHAT
    assert result(page, "net_version") == "31337"
    # reads are the node's own answers
    assert int(result(page, "eth_blockNumber"), 16) == env.w3.eth.block_number
    balance = result(page, "eth_getBalance", [client, "latest"])
    assert int(balance, 16) == env.balance(env.client)
    # the node's test controls and the signing methods wallets do not offer are refused
    assert error_code(call(page, "hardhat_mine", [])) == 4200
    assert error_code(call(page, "eth_sign", [client, "0x00"])) == 4200
    signature = personal_sign(page, client, "hello")
    assert Account.recover_message(encode_defunct(text="hello"), signature=signature) == env.client
    assert [r.method for r in session.wallet.requests][:3] == [
        "eth_accounts", "personal_sign", "eth_requestAccounts"
    ]


def test_typed_data_from_the_live_api_is_signed_and_relayed(
    live_service: LiveService, wallet_browser: Any, shot: Shots
) -> None:
    """The whole confirmation story in the page: typed data from the API, the wallet's
    eth_signTypedData_v4, the confirmation posted, the relayer and indexer settle it."""
    env = live_service.env
    escrow_id = env.create_active()
    env.deliver(escrow_id, 0)
    page = open_harness(live_service, wallet_browser("client", connected=True).page)
    shot(page, "harness")
    story = page.evaluate(
        """async ([escrowId, account]) => {
          const post = async (path, body) => {
            const response = await fetch(path, {method: "POST",
              headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
            return {status: response.status, body: await response.json()};
          };
          const base = `/api/escrows/${escrowId}/milestones/0`;
          const prepared = await post(`${base}/typed-data`, {rating: 5});
          const signature = await window.ethereum.request({method: "eth_signTypedData_v4",
            params: [account, JSON.stringify(prepared.body.typed_data)]});
          const message = prepared.body.typed_data.message;
          const queued = await post(`${base}/confirmations`, {rating: message.rating,
            comment: "", attachments: [], deadline: String(message.deadline), signature});
          return {prepared, signature, queued};
        }""",
        [escrow_id, env.client.lower()],
    )
    assert story["prepared"]["status"] == 200, story
    typed = story["prepared"]["body"]["typed_data"]
    signer = Account.recover_message(encode_typed_data(full_message=typed),
                                     signature=story["signature"])
    assert signer == env.client
    assert story["queued"]["status"] == 202, story
    wait_until(page, lambda: settled_events(live_service.services, escrow_id, 0), timeout=10,
               message="the relayer settles the milestone")

    def indexed_settlement() -> dict[str, Any] | None:
        response = live_service.http.get(f"/api/escrows/{escrow_id}")
        milestone = response.json()["milestones"][0] if response.status_code == 200 else {}
        return milestone if milestone.get("settled_tx") else None

    milestone = wait_until(page, indexed_settlement, message="the indexer records the settlement")
    assert milestone["rating"] == 5
    shot(page, "settled")


def test_a_sent_transaction_is_mined(live_service: LiveService, wallet_browser: Any) -> None:
    env = live_service.env
    session: BrowserSession = wallet_browser("client", connected=True)
    page = open_harness(live_service, session.page)
    before = env.balance(env.provider)
    tx_hash = result(page, "eth_sendTransaction", [{"to": env.provider, "value": "0x1"}])
    receipt = result(page, "eth_getTransactionReceipt", [tx_hash])
    assert receipt["status"] == "0x1"
    assert receipt["from"] == env.client.lower()
    assert env.balance(env.provider) == before + 1
    assert session.wallet.transactions == [tx_hash]
    # a `from` other than the connected account is refused
    other = {"from": env.provider, "to": env.client, "value": "0x1"}
    assert error_code(call(page, "eth_sendTransaction", [other])) == 4100


def test_refusals_are_4001_once(live_service: LiveService, wallet_browser: Any) -> None:
    env = live_service.env
    session: BrowserSession = wallet_browser("client")
    wallet, client = session.wallet, env.client.lower()
    page = open_harness(live_service, session.page)
    wallet.reject_next_connection = True
    reply = call(page, "eth_requestAccounts")
    assert error_code(reply) == 4001
    assert reply["error"]["message"] == "User rejected the request."
    assert result(page, "eth_requestAccounts") == [client]
    wallet.reject_next_signature = True
    assert error_code(call(page, "personal_sign", ["0x01", client])) == 4001
    personal_sign(page, client, "second try")
    wallet.reject_next_transaction = True
    transfer = [{"from": client, "to": env.provider, "value": "0x1"}]
    assert error_code(call(page, "eth_sendTransaction", transfer)) == 4001
    assert wallet.transactions == []
    result(page, "eth_sendTransaction", transfer)
    assert len(wallet.transactions) == 1


def test_a_wrong_chain_is_switched_and_chain_changed_is_emitted(
    live_service: LiveService, wallet_browser: Any
) -> None:
    env = live_service.env
    session: BrowserSession = wallet_browser("client", chain_id=1, connected=True)
    wallet, client = session.wallet, env.client.lower()
    page = open_harness(live_service, session.page)
    assert result(page, "eth_chainId") == "0x1"
    # on the wrong chain the wallet refuses what MetaMask refuses
    confirmation = env.confirmation(1, 0)
    typed = json.dumps(confirmation.typed_data(env.escrow.chain_id, env.escrow.address))
    mismatch = call(page, "eth_signTypedData_v4", [client, typed])
    assert error_code(mismatch) == -32602
    assert "must match the active chainId" in mismatch["error"]["message"]
    transfer = [{"to": env.provider, "value": "0x1"}]
    assert error_code(call(page, "eth_sendTransaction", transfer)) == 4901
    # an unknown chain is 4902; the node's chain is switched to
    assert error_code(call(page, "wallet_switchEthereumChain", [{"chainId": "0x539"}])) == 4902
    wallet.reject_next_chain_request = True
    assert error_code(call(page, "wallet_switchEthereumChain", [{"chainId": HARDHAT}])) == 4001
    assert result(page, "wallet_switchEthereumChain", [{"chainId": HARDHAT}]) is None
    assert events(page) == [[RDNS, "chainChanged", HARDHAT]]
    assert result(page, "eth_chainId") == HARDHAT
    # the user moves to mainnet in the wallet; the page's switch back meets a wallet that has
    # forgotten the node's chain, so the page adds it first
    wallet.switch_chain(1)
    wallet.forget_chain(31337)
    assert events(page)[-1] == [RDNS, "chainChanged", "0x1"]
    assert error_code(call(page, "wallet_switchEthereumChain", [{"chainId": HARDHAT}])) == 4902
    spec = {"chainId": HARDHAT, "chainName": "Hardhat", "rpcUrls": ["http://127.0.0.1:8545"],
            "nativeCurrency": {"name": "Ether", "symbol": "ETH", "decimals": 18}}
    assert result(page, "wallet_addEthereumChain", [spec]) is None
    assert events(page)[-1] == [RDNS, "chainChanged", HARDHAT]
    assert wallet.added_chains == [spec]
    signature = result(page, "eth_signTypedData_v4", [client, typed])
    assert signature == "0x" + env.sign(confirmation).hex()  # as eth-account signs it


def test_account_switches_reach_every_tab(live_service: LiveService, wallet_browser: Any) -> None:
    env = live_service.env
    session: BrowserSession = wallet_browser("client", connected=True)
    first = open_harness(live_service, session.page)
    second = open_harness(live_service, session.new_page())
    stranger = env.parties.stranger.address.lower()
    session.wallet.switch_account(env.parties.stranger)
    for page in (first, second):
        assert events(page) == [[RDNS, "accountsChanged", [stranger]]]
        assert result(page, "eth_accounts") == [stranger]
    signature = personal_sign(first, stranger, "as the stranger")
    signer = Account.recover_message(encode_defunct(text="as the stranger"), signature=signature)
    assert signer == env.parties.stranger.address
    # a chain switch one tab asks for reaches the other tab of the same site too
    session.wallet.switch_chain(1)
    assert result(first, "wallet_switchEthereumChain", [{"chainId": HARDHAT}]) is None
    second.wait_for_function(f"() => harness.events.at(-1)[2] === '{HARDHAT}'")
    session.wallet.disconnect()
    assert events(first)[-1] == [RDNS, "accountsChanged", []]


def test_client_and_provider_browse_at_once_with_their_own_accounts(
    live_service: LiveService, wallet_browser: Any
) -> None:
    env = live_service.env
    client: BrowserSession = wallet_browser("client")
    provider: BrowserSession = wallet_browser("provider")
    client_page = open_harness(live_service, client.page)
    provider_page = open_harness(live_service, provider.page)
    assert result(client_page, "eth_requestAccounts") == [env.client.lower()]
    assert result(provider_page, "eth_requestAccounts") == [env.provider.lower()]
    for page, party in ((client_page, env.client), (provider_page, env.provider)):
        signature = personal_sign(page, party.lower(), "who am I")
        signer = Account.recover_message(encode_defunct(text="who am I"), signature=signature)
        assert signer == party
    client.wallet.switch_account(env.parties.stranger)  # the other context does not hear it
    assert events(provider_page) == [[RDNS, "accountsChanged", [env.provider.lower()]]]


def test_axe_reports_violations_and_the_assertion_catches_serious_ones(
    live_service: LiveService, wallet_browser: Any
) -> None:
    page = open_harness(live_service, wallet_browser("client").page)
    assert_accessible(page)
    page.evaluate("() => document.querySelector('main').insertAdjacentHTML('beforeend',"
                  " '<img src=\"data:,\"><button></button>')")
    ids = {v["id"] for v in axe(page)}
    assert {"image-alt", "button-name"} <= ids
    with pytest.raises(AssertionError, match="image-alt"):
        assert_accessible(page)


def test_shots_are_numbered_pngs_in_the_tests_folder(
    live_service: LiveService, wallet_browser: Any, shot: Shots
) -> None:
    page = open_harness(live_service, wallet_browser("client").page)
    first = shot(page, "harness page")
    second = shot(page, "again")
    assert first.name == "01-harness-page.png"
    assert second.name == "02-again.png"
    assert first.parent.name == (
        "web-test_harness.py-test_shots_are_numbered_pngs_in_the_tests_folder"
    )
    assert first.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
