"""Templates and what every page gets: one Jinja2 environment per language with its Babel
catalogue installed (`jinja2.ext.i18n`), filters that write amounts in the token's units and
durations in words for that language, and the page's shared context (`page`).

Times go out as ISO 8601 UTC inside `<time datetime=...>`; `static/js/app.js` rewrites them in
the viewer's time zone and counts deadlines down."""

from __future__ import annotations

import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from backend.chain.types import ZERO_ADDRESS
from backend.i18n import (
    LANGUAGE_NAMES,
    LOCALES,
    format_amount,
    format_duration,
    negotiate,
    translations,
)
from backend.services import Services

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
#: the cookie the language switch sets (one year)
LANG_COOKIE = "lang"


@cache
def environment(locale: str) -> Environment:
    """The template environment of one language (built once per language)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["amount"] = lambda value, token: amount(value, token, locale)
    env.filters["duration"] = lambda seconds: format_duration(int(seconds), locale)
    env.filters["short"] = short_address
    env.filters["iso"] = iso_time
    env.globals["time_tag"] = time_tag
    return env


def amount(value: int | str | None, token: dict[str, Any] | None, locale: str) -> str:
    """Base units (an int or a decimal string) in the token's units with its symbol."""
    if value is None:
        return "-"
    token = token or {}
    symbol = token.get("symbol") or short_address(str(token.get("address") or ZERO_ADDRESS))
    return format_amount(int(value), token.get("decimals") or 0, symbol, locale)


def short_address(address: str | None) -> str:
    """`0x1234…abcd`: what a person compares at a glance (the full address is in `title`)."""
    if not address:
        return "-"
    return f"{address[:6]}…{address[-4:]}"


def iso_time(ts: int | None) -> str:
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(int(ts), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_tag(ts: int | None, *, countdown: bool = False) -> Markup:
    """`<time>` of a unix time: UTC in the markup, the viewer's zone once the script ran; a
    countdown shows the time left as well."""
    if ts is None:
        return Markup("-")
    iso = iso_time(ts)
    mode = ' data-countdown="1"' if countdown else ""
    return Markup(f'<time datetime="{iso}"{mode}>{iso.replace("T", " ")[:-4]} UTC</time>')


def language(request: Request) -> str:
    """The page's language: `?lang=`, then the `lang` cookie, then `Accept-Language`."""
    requested = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    return negotiate(request.headers.get("accept-language"), requested)


def page(
    request: Request,
    services: Services,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Renders `template` in the request's language with the shared context: `lang`,
    `languages`, `path` (for the language links), `config` (chain and contract the wallet must
    be on) and `account` (the `?account=` the page is for, when given)."""
    lang = language(request)
    shared = {
        "lang": lang,
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LOCALES],
        # the same page in each language: the query kept, `lang` replaced
        "language_urls": {
            code: request.url.path + "?" + urlencode({**request.query_params, "lang": code})
            for code in LOCALES
        },
        "path": request.url.path,
        "config": {
            "chain_id": services.chain_id,
            "contract": services.escrow.address,
            "rpc_url": services.settings.wallet_rpc_url,  # what a wallet adds
        },
    }
    html = environment(lang).get_template(template).render({**shared, **context})
    response = HTMLResponse(html, status_code=status_code)
    if "lang" in request.query_params and request.query_params["lang"] == lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86_400, samesite="lax")
    response.headers["Content-Language"] = lang
    return response
