"""`/docs` (Swagger UI) and `/redoc` for the OpenAPI document, with every asset served by the
app itself (no CDN: the service must work offline).

The scripts, the stylesheet and the tab icon are the files of the npm packages `swagger-ui-dist`
5 and `redoc` 2 vendored under `static/vendor/` (versions, sources and digests in its README.md)
and served by the app's `/static` mount. Swagger UI's online validator badge is turned off (it
would load an image from another host), and ReDoc gets no Google Fonts link.

Both pages go out with a Content-Security-Policy that lets them load nothing from another host,
so no release of the vendored bundles can reach out either: ReDoc 2's side menu, for one, shows
a logo from cdn.redoc.ly, which the browser then refuses and ReDoc hides. Inline `<script>`s
are allowed by their sha256 (FastAPI's page starts Swagger UI with one); inline styles are
allowed (both libraries set them), as are `data:` images and fonts and ReDoc's `blob:` worker.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

#: the vendored files on disk (`backend/web/static/vendor/`)
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
#: where the app serves them (`install_web` mounts `static/` at `/static`)
VENDOR_URL = "/static/vendor"
SWAGGER_JS = f"{VENDOR_URL}/swagger-ui-dist/swagger-ui-bundle.js"
SWAGGER_CSS = f"{VENDOR_URL}/swagger-ui-dist/swagger-ui.css"
FAVICON = f"{VENDOR_URL}/swagger-ui-dist/favicon-32x32.png"
REDOC_JS = f"{VENDOR_URL}/redoc/redoc.standalone.js"

#: Swagger UI's options over FastAPI's defaults: no badge from validator.swagger.io
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """The policy of a docs page: everything from the app's own origin, the page's inline
    scripts by hash."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
    return "; ".join([
        "default-src 'self'",
        " ".join(["script-src 'self'", *hashes]),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ])


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = content_security_policy(bytes(page.body).decode())
    return page


def install_docs(app: FastAPI) -> None:
    """Adds `/docs` and `/redoc` (the app is created with FastAPI's own turned off)."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} - API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _offline(get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=FAVICON,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        ))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _offline(get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        ))
