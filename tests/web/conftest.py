"""Page tests: the real service in real headless Chromium, with a test wallet in the page.

A page test walks a story the way users do, one browser per party::

    from playwright.sync_api import expect
    from tests.web.support import assert_accessible, wait_until

    def test_client_confirms_a_delivery(live_service, wallet_browser, shot):
        env = live_service.env                      # tests.support.EscrowEnv on Hardhat
        escrow_id = env.create_active()
        env.deliver(escrow_id, 0)
        client = wallet_browser("client")           # own context, page and TestWallet
        page = client.page
        page.goto(f"/escrows/{escrow_id}")          # relative to live_service.url
        shot(page, "delivered")                     # .../screenshots/<test>/01-delivered.png
        assert_accessible(page)                     # no serious/critical axe-core violations
        client.wallet.reject_next_signature = True  # the user closes the popup once: 4001
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("alert")).to_contain_text("rejected")
        page.get_by_role("button", name="Confirm").click()
        wait_until(page, lambda: live_service.api("GET", f"/api/escrows/{escrow_id}")
                   ["milestones"][0]["settled_tx"])  # relayer and indexer did their part

The fixtures (all stop what they start, in reverse order, also when the test fails):

- ``chromium`` (one per test module): a Playwright ``Browser`` on Debian's /usr/bin/chromium,
  headless. Without it (or outside Debian) the page tests skip on a developer machine and fail
  under CI (env ``CI`` set); ``scripts/setup`` installs it as root on Debian.
- ``live_service``: ``LiveService(url, services, env, workers, http)``: the real app
  (``create_app``) served by uvicorn on a free 127.0.0.1 port in a thread, with every worker
  (indexer, relayer, oracle, webhooks; each polling every 0.2 s) on the session's Hardhat node
  (``env`` is ``hardhat_env``, reverted after the test) and a fresh SQLite file under the
  test's tmp_path. Page tests run on SQLite only: the database layer is tested on SQLite and
  PostgreSQL by the API tests, and one database keeps the browser tests fast.
  ``live_service.api("GET", path)`` calls the API from Python and asserts the status. A module
  that needs other settings overrides the fixture with
  ``tests.web.support.live_service_on(env, database_url, data_dir, **settings)``.
- ``wallet_browser(party="client", *, account=None, chain_id=None, connected=False,
  locale="en-US", viewport=None, allow_page_errors=False, decoy=False)`` -> ``BrowserSession``
  with ``.page``, ``.context``, ``.wallet`` (``tests.web.wallet.TestWallet``), ``.console``,
  ``.errors`` and ``.new_page()``. ``party`` names a ``tests.support.Parties`` account (client,
  provider, arbiter, oracle, stranger, ...); several sessions run at once, one per party. The
  context's ``base_url`` is the live service, so ``page.goto("/path")`` works. The wallet is an
  EIP-1193 provider announced through EIP-6963 (and ``window.ethereum``); ``chain_id`` makes it
  report another chain (a wrong network), ``connected`` skips the connect prompt, ``decoy``
  announces a second wallet beside it (``tests.web.wallet.add_decoy_wallet``). Steer it with
  ``wallet.reject_next_connection / reject_next_signature / reject_next_transaction /
  reject_next_chain_request = True`` (4001), ``wallet.switch_account(acct)`` (emits
  ``accountsChanged``), ``wallet.switch_chain(id)`` (``chainChanged``),
  ``wallet.forget_chain(id)`` (then ``wallet_switchEthereumChain`` answers 4902),
  ``wallet.disconnect()``; read ``wallet.requests``, ``.signatures``, ``.transactions``.
  An uncaught error in a page, or the wallet's own failure, fails the test (unless
  ``allow_page_errors``); a failing test leaves ``failed-<party>.png`` and
  ``console-<party>.log`` (console, page errors, wallet requests) in its artifact folder.
- ``shot(page, name)``: a full-page screenshot ``test-artifacts/screenshots/<test>/<n>-<name>.png``
  (the folder is emptied at the test's first shot; ``test-artifacts/`` is gitignored).

Helpers in ``tests.web.support``: ``axe(page)`` (axe-core's violations),
``assert_accessible(page)``, ``wait_until(page, predicate)``. Wait with Playwright
(``expect``, ``page.wait_for_*``, ``wait_until``), never ``time.sleep``: the wallet answers the
page only while the test is inside a Playwright call. Every test that uses ``chromium`` is
marked ``web`` (``-m "not web"`` leaves them out), and the live service makes it ``hardhat``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from backend.chain.node import HardhatNode
from tests.support import EscrowEnv
from tests.web.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGE_TIMEOUT_MS,
    BrowserSession,
    LiveService,
    Shots,
    artifact_dir,
    quick_live_service,
)
from tests.web.wallet import NodeRpc, TestWallet, add_decoy_wallet

_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that drives the browser (`-m "not web"` runs without them)."""
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.web)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, one per test module.

    Not session-wide: while Playwright's sync API runs, its event loop is the running loop of
    the main thread, so a later test's `asyncio.run` in the same process (the pytest-xdist
    worker that ran a page test) would raise "cannot be called from a running event loop"."""
    if not os.access(CHROMIUM, os.X_OK):
        missing = f"no {CHROMIUM}: run scripts/setup as root on Debian (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Chromium for the page tests: {missing}", pytrace=False)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def live_service(
    hardhat_env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveService]:
    """The app and its workers on a free port, on the Hardhat chain and a fresh SQLite file."""
    with quick_live_service(hardhat_env, tmp_path, monkeypatch, "web") as live:
        yield live


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shots:
    """`shot(page, name)`: test-artifacts/screenshots/<test>/<n>-<name>.png; returns the path."""
    return Shots(artifact_dir(request.node.nodeid))


@pytest.fixture
def wallet_browser(
    chromium: Browser,
    live_service: LiveService,
    hardhat_node: HardhatNode,
    shot: Shots,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., BrowserSession]]:
    """Factory of one party's browser session (own context, page and wallet); closes them all
    after the test."""
    sessions: list[BrowserSession] = []

    def open_session(
        party: str = "client",
        *,
        account: LocalAccount | None = None,
        chain_id: int | None = None,
        connected: bool = False,
        locale: str = "en-US",
        viewport: dict[str, int] | None = None,
        allow_page_errors: bool = False,
        decoy: bool = False,
    ) -> BrowserSession:
        wallet = TestWallet(
            NodeRpc(hardhat_node.url),
            account or getattr(live_service.env.parties, party),
            chain_id=chain_id or 0,
            connected=connected,
        )
        context = chromium.new_context(
            base_url=live_service.url,
            locale=locale,
            timezone_id="UTC",
            viewport=viewport or {"width": 1280, "height": 800},
            reduced_motion="reduce",
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            wallet.install(context)
            if decoy:
                add_decoy_wallet(context)
            page = context.new_page()
        except Exception:
            context.close()
            wallet.node.close()
            raise
        session = BrowserSession(party, context, page, wallet, allow_page_errors=allow_page_errors)
        session.watch(page)
        sessions.append(session)
        return session

    yield open_session

    report = request.node.stash.get(_CALL_REPORT, None)
    failed = report is not None and report.failed
    problems: list[str] = []
    for session in sessions:
        try:
            if failed:
                _leave_failure_artifacts(session, shot)
            problems += session.problems()
        finally:
            session.context.close()
            session.wallet.node.close()
    if problems and not failed:
        pytest.fail("\n".join(problems), pytrace=False)


def _leave_failure_artifacts(session: BrowserSession, shot: Shots) -> None:
    for n, page in enumerate(session.context.pages):
        suffix = "" if n == 0 else f"-tab{n + 1}"
        with contextlib.suppress(PlaywrightError):  # a page gone or hanging: the log still tells
            page.screenshot(path=str(shot.path(f"failed-{session.party}{suffix}.png")),
                            full_page=True)
    requests = [
        f"{r.method} {r.params!r} -> {r.error if r.error else r.result!r}"
        for r in session.wallet.requests
    ]
    shot.path(f"console-{session.party}.log").write_text(
        "\n".join(
            ["# console", *session.console, "# page errors", *session.errors,
             "# wallet requests", *requests]
        ) + "\n"
    )
