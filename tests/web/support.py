"""Scaffolding of the page tests (tests/web/conftest.py has the fixtures and how to use them): the
live service on a real port, browser sessions with their wallet, accessibility checks with
axe-core, screenshots, and waiting without starving the page's wallet."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from playwright.sync_api import BrowserContext, Page

from backend.api.app import create_app
from backend.config import Settings
from backend.paths import HARDHAT_DIR, REPO_ROOT
from backend.services import Services, build_services
from backend.workers import WORKER_NAMES, Workers, start_workers
from tests.support import EscrowEnv
from tests.web.wallet import TestWallet

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update",
)
AXE_JS = HARDHAT_DIR / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
#: seconds between two passes of the indexer, the relayer and the oracle of the live service
LIVE_POLL = 0.2
#: Playwright's wait for one action or assertion (its default, 30 s, only delays a failure)
PAGE_TIMEOUT_MS = 10_000


# ---------------------------------------------------------------------- the live service


@dataclass
class LiveService:
    """The real app on `url` (http://127.0.0.1:port) with its workers, on the test's chain."""

    url: str
    services: Services = field(repr=False)
    env: EscrowEnv = field(repr=False)
    workers: Workers = field(repr=False)
    #: an HTTP client on `url`, for the test's own API calls
    http: httpx.Client = field(repr=False)

    def api(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """One API call from Python, asserting its status; the JSON answer."""
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json() if response.content else None


@contextmanager
def serve(app: Any, *, name: str = "live-service") -> Iterator[str]:
    """Serves the ASGI `app` with uvicorn on a free 127.0.0.1 port in a background thread;
    yields its URL and stops it afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
    ))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name,
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {port}")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        if thread.is_alive():  # pragma: no cover - a stuck shutdown
            raise RuntimeError("uvicorn did not stop within 10 s")


@contextmanager
def live_service_on(
    env: EscrowEnv,
    database_url: str,
    data_dir: Path,
    *,
    workers: tuple[str, ...] = WORKER_NAMES,
    **settings: Any,
) -> Iterator[LiveService]:
    """The app and its `workers` on the Hardhat chain of `env` and `database_url`, served on a
    free port; stops the workers and the server afterwards. A worker that failed meanwhile (its
    error is in the log) fails the test."""
    settings.setdefault("index_poll_interval", LIVE_POLL)
    config = Settings(
        rpc_url=str(getattr(env.w3.provider, "endpoint_uri", "")) or "http://127.0.0.1:1",
        data_dir=data_dir,
        database_url=database_url,
        **settings,
    )
    services = build_services(
        config, w3=env.w3, contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )
    try:
        running = start_workers(services, workers)
        try:
            with serve(create_app(services)) as url, httpx.Client(base_url=url, timeout=10) as http:
                yield LiveService(url, services, env, running, http)
            # a worker that raised is started again (backend/workers.py `supervise`): the
            # board, not the thread, tells whether one failed
            failed = [(w.name, w.state, w.error) for w in services.workers.all()
                      if w.restarts or w.state in ("restarting", "off")]
            assert not failed, f"workers stopped with an error (see the log): {failed}"
        finally:
            running.shutdown()
    finally:
        services.engine.dispose()


@contextmanager
def quick_live_service(
    env: EscrowEnv, tmp_path: Path, monkeypatch: Any, name: str
) -> Iterator[LiveService]:
    """`live_service_on` with the senders passing every `LIVE_POLL` seconds (1 s and 5 s in
    production), on a fresh SQLite file `<tmp_path>/<name>.db` and data folder: the
    `live_service` fixture of tests/web, tests/cli and tests/client."""
    from backend.confirmations.relayer import Relayer
    from backend.oracle.worker import Oracle

    for sender in (Relayer, Oracle):
        monkeypatch.setattr(sender, "interval", LIVE_POLL)
    with live_service_on(env, f"sqlite:///{tmp_path / f'{name}.db'}", tmp_path / "data") as live:
        yield live


# ---------------------------------------------------------------------- browser sessions


@dataclass
class BrowserSession:
    """One party's browser: its own context (cookies, storage), page and wallet."""

    party: str
    context: BrowserContext
    page: Page
    wallet: TestWallet
    #: "type: text" of every console message, and every uncaught page error
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: whether uncaught page errors are expected (else the fixture fails the test)
    allow_page_errors: bool = False

    def watch(self, page: Page) -> None:
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def new_page(self) -> Page:
        """A second tab of the same party (same wallet, same storage)."""
        page = self.context.new_page()
        self.watch(page)
        return page

    def problems(self) -> list[str]:
        found = [f"{self.party} wallet: {e}" for e in self.wallet.internal_errors]
        if not self.allow_page_errors:
            found += [f"{self.party} page error: {e}" for e in self.errors]
        return found


def wait_until(
    page: Page, predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.1,
    message: str = "",
) -> T:
    """Polls `predicate` (Python: the database, the chain, the API) until it returns something
    truthy, which it returns; fails after `timeout` seconds. Waits with `page.wait_for_timeout`,
    so the page and its wallet go on meanwhile (`time.sleep` would starve the wallet)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {message or predicate}")
        page.wait_for_timeout(interval * 1000)


# ---------------------------------------------------------------------- accessibility


def axe(
    page: Page, *, context: Any = None, options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Runs axe-core (hardhat_local/node_modules/axe-core) on the page; its violations, each
    `{id, impact, help, helpUrl, nodes: [{target, html, failureSummary}], ...}`. `context` and
    `options` are axe.run's (a selector, `{include, exclude}`; `{runOnly: [...]}`, `{rules}`).
    Injected through the DevTools protocol, so a page's Content-Security-Policy does not stop it
    and the page's own CSP is still tested."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        if not AXE_JS.is_file():
            raise FileNotFoundError(f"{AXE_JS} is missing: run scripts/setup (npm ci)")
        page.evaluate(AXE_JS.read_text() + "\n;0")
    run_options = {"resultTypes": ["violations"], **(options or {})}
    violations: list[dict[str, Any]] = page.evaluate(
        "async ([context, options]) => (await axe.run(context || document, options)).violations",
        [context, run_options],
    )
    return violations


def assert_accessible(
    page: Page, *, impacts: tuple[str, ...] = ("serious", "critical"), **kwargs: Any
) -> list[dict[str, Any]]:
    """Fails when axe finds a violation of one of `impacts`; returns every violation (the
    minor and moderate ones to look at)."""
    violations = axe(page, **kwargs)
    bad = [v for v in violations if v.get("impact") in impacts]
    assert not bad, "accessibility violations:\n" + describe_violations(bad)
    return violations


def describe_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} [{targets}] {v['helpUrl']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- screenshots


def artifact_dir(nodeid: str) -> Path:
    """`test-artifacts/screenshots/<test>/` for a pytest node id."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid.removeprefix("tests/")).strip("-")
    return SCREENSHOTS / name


class Shots:
    """Numbered screenshots of one test: `<n>-<name>.png` in its artifact folder, which the
    first file written empties (a rerun does not mix with the last one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self._ready = False

    def path(self, filename: str) -> Path:
        """Where the test's artifact `filename` goes (the folder made, emptied once)."""
        if not self._ready:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            self._ready = True
        return self.folder / filename

    def __call__(self, page: Page, name: str, *, full_page: bool = True) -> Path:
        self.count += 1
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "shot"
        path = self.path(f"{self.count:02d}-{slug}.png")
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path
