"""`/docs` (Swagger UI) and `/redoc` work offline: every script, stylesheet and icon they load is
a vendored file the app serves itself under `/static/vendor/` (`backend/web/docs.py`), and the
HTML names no other host, and in headless Chromium with every non-loopback request blocked both
pages render the API's operations. The pages touch no database, so they run on SQLite only."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect

from backend.web.docs import VENDOR_DIR
from tests.api.support import Api
from tests.web.support import PAGE_TIMEOUT_MS, LiveService

PAGES = ("/docs", "/redoc")
#: what a loaded asset may be served as, by the kind of tag that loads it
MEDIA_TYPES = {
    "script": {"text/javascript", "application/javascript"},
    "stylesheet": {"text/css"},
    "icon": {"image/png", "image/x-icon", "image/svg+xml"},
}


class _Assets(HTMLParser):
    """The URLs a page makes the browser load: `<script src>` and `<link href>`, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and values.get("src"):
            self.found.append(("script", values["src"]))
        elif tag == "link" and values.get("href"):
            rel = values.get("rel", "").lower()
            self.found.append(("stylesheet" if "stylesheet" in rel else "icon", values["href"]))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only (overrides tests/db_fixture.py's SQLite-and-PostgreSQL pair for this module)."""
    return f"sqlite:///{tmp_path / 'escrow.db'}"


def _assets(html: str) -> list[tuple[str, str]]:
    parser = _Assets()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_pages_load_only_same_origin_static_files(api: Api, page: str) -> None:
    response = api.http.get(page)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    # no CDN, no Google Fonts, no validator badge: no absolute URL at all (scheme-relative too)
    assert re.findall(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE) == []
    assets = _assets(html)
    kinds = {kind for kind, _ in assets}
    assert "script" in kinds and "icon" in kinds
    if page == "/docs":
        assert "stylesheet" in kinds
    for kind, url in assets:
        assert url.startswith("/static/vendor/"), url
        served = api.http.get(url)
        assert served.status_code == 200, url
        media_type = served.headers["content-type"].split(";")[0].strip()
        assert media_type in MEDIA_TYPES[kind], (url, media_type)
        on_disk = VENDOR_DIR / url.removeprefix("/static/vendor/")
        assert served.content == on_disk.read_bytes(), url


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_pages_forbid_loading_anything_from_another_host(api: Api, page: str) -> None:
    response = api.http.get(page)
    policy: dict[str, str] = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, _, value = part.strip().partition(" ")
        policy[name] = value
    assert policy["default-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    # the inline script that starts Swagger UI runs by its hash, no other inline script does
    scripts = policy["script-src"].split()
    assert scripts[0] == "'self'" and "'unsafe-inline'" not in scripts
    assert len(scripts) == (2 if page == "/docs" else 1)


def test_swagger_ui_reads_the_apps_own_openapi_document_and_turns_the_validator_badge_off(
    api: Api,
) -> None:
    html = api.http.get("/docs").text
    assert "url: '/openapi.json'" in html
    assert '"validatorUrl": null' in html
    assert '<redoc spec-url="/openapi.json">' in api.http.get("/redoc").text

    document = api.http.get("/openapi.json")

    assert document.status_code == 200
    body = document.json()
    assert body["info"]["title"] == "Quality Escrow"
    assert "/api/escrows/{escrow_id}/milestones/{milestone}/act.pdf" in body["paths"]
    # the pages themselves are not operations of the API
    assert not {"/docs", "/redoc"} & set(body["paths"])


def test_the_vendored_files_name_their_package_version_and_license() -> None:
    readme = (VENDOR_DIR / "README.md").read_text()
    for package, version in (("swagger-ui-dist", "5."), ("redoc", "2.")):
        assert re.search(rf"`{package}` {re.escape(version)}\d+\.\d+", readme), package
        assert (VENDOR_DIR / package / "LICENSE").is_file()
    for path in VENDOR_DIR.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.relative_to(VENDOR_DIR).as_posix() in readme, path


# ------------------------------------------------------------------ in the browser

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: records what the page's Content-Security-Policy refuses
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push({directive: event.effectiveDirective, uri: event.blockedURI});
});
"""


def _operations(document: dict[str, Any]) -> int:
    """How many operation rows the pages list: one per operation and tag."""
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return sum(
        len(op.get("tags") or ["default"])
        for item in document["paths"].values()
        for method, op in item.items()
        if method in methods
    )


@pytest.mark.parametrize("page_path", PAGES)
def test_the_docs_render_in_chromium_with_every_other_host_blocked(
    chromium: Browser, live_service: LiveService, page_path: str
) -> None:
    document = live_service.api("GET", "/openapi.json")
    act = "/api/escrows/{escrow_id}/milestones/{milestone}/act.pdf"
    context = chromium.new_context(base_url=live_service.url)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page = context.new_page()
        loaded: list[str] = []
        blocked: list[str] = []
        errors: list[str] = []

        def offline(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).hostname in LOOPBACK:
                loaded.append(url)
                route.continue_()
            else:
                blocked.append(url)
                route.abort("internetdisconnected")

        page.route("**/*", offline)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.add_init_script(CSP_WATCH)
        page.goto(page_path)

        if page_path == "/docs":
            expect(page.locator(".opblock").first).to_be_visible()
            expect(page.locator(".opblock")).to_have_count(_operations(document))
            expect(page.locator(f'.opblock-summary-path[data-path="{act}"]')).to_be_visible()
        else:
            operation = page.locator("[data-section-id^='operation/'], [data-section-id^='tag/']")
            expect(operation.first).to_be_attached()
            expect(page.get_by_text(act).first).to_be_attached()
        assert blocked == []
        assert errors == []
        # the policy refused only pictures from elsewhere (ReDoc's Redocly logo), nothing the
        # page needs: no script, style, font, worker or fetch
        refused = page.evaluate("window.cspViolations")
        assert [v for v in refused if not (
            v["directive"].startswith("img-src") and urlsplit(v["uri"]).hostname not in LOOPBACK
        )] == []
        origin = live_service.url.rstrip("/")
        assert f"{origin}/openapi.json" in loaded
        assets = [url for url in loaded if "/static/vendor/" in url]
        assert assets, loaded
    finally:
        context.close()
