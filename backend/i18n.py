"""Languages of the pages and documents: English, Russian and Spanish.

- `negotiate` picks the language: an explicit choice (`?lang=`, then the `lang` cookie the
  language switch sets) over the browser's `Accept-Language` (RFC 9110 section 12.5.4: ranges
  with q-values, `ru-RU` matching `ru`), English when nothing matches.
- `translations(locale, domain)` is the Babel catalogue of a domain (`messages`: the pages,
  `acts`: the act PDF), read from `backend/locale/<locale>/LC_MESSAGES/<domain>.po` and
  compiled in memory once; English is the source language (the msgids), so it has no catalogue.
- `format_amount` and `format_duration` write amounts and durations as a reader of the locale
  expects (`1,5 ETH` in Russian and Spanish, `1.5 ETH` in English; `3 дня`).
"""

from __future__ import annotations

import io
from decimal import Decimal, localcontext
from functools import cache
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from babel.units import format_unit

LOCALES = ("en", "ru", "es")
DEFAULT_LOCALE = "en"
#: the catalogues: <locale>/LC_MESSAGES/<domain>.po
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: the names of the languages, each in its own language (the language switch)
LANGUAGE_NAMES = {"en": "English", "ru": "Русский", "es": "Español"}


def supported(locale: str | None) -> str | None:
    """`locale` if it names (a region of) one of `LOCALES`, as that locale; else None."""
    if not locale:
        return None
    base = locale.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LOCALES else None


def negotiate(accept_language: str | None, requested: str | None = None) -> str:
    """The language to answer in: `requested` when supported, else the best of the
    `Accept-Language` ranges by q-value (ties in header order; `q=0` excludes), else English."""
    chosen = supported(requested)
    if chosen is not None:
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag == "*":
            tag = DEFAULT_LOCALE
        locale = supported(tag)
        if locale is not None and quality > 0:
            ranked.append((-quality, position, locale))
    return min(ranked)[2] if ranked else DEFAULT_LOCALE


@cache
def translations(locale: str, domain: str = "messages") -> NullTranslations:
    """The compiled catalogue of `domain` in `locale` (English and unknown locales: the
    msgids themselves)."""
    path = LOCALE_DIR / locale / "LC_MESSAGES" / f"{domain}.po"
    if locale == DEFAULT_LOCALE or not path.is_file():
        return NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=locale, domain=domain)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=domain)


def format_amount(amount: int, decimals: int | None, symbol: str | None, locale: str) -> str:
    """`amount` base units as an exact decimal in the token's units, grouped for the locale,
    with the symbol ("1.5 ETH", "1 250,75 USDC"); never rounded."""
    with localcontext() as exact:  # a uint256 has up to 78 digits; Decimal's default keeps 28
        exact.prec = 100
        value = Decimal(amount).scaleb(-(decimals or 0))
        text = format_decimal(value, locale=Locale.parse(locale), decimal_quantization=False)
    return f"{text} {symbol}" if symbol else text


#: the units a duration is written in, largest first (CLDR unit names)
_DURATION_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def format_duration(seconds: int, locale: str) -> str:
    """A period of the terms in words, exact: "3 days", "1 day 1 hour", "2 часа" (CLDR unit
    patterns through Babel); 0 is "0 seconds"."""
    parts: list[str] = []
    rest = max(0, int(seconds))
    for unit, size in _DURATION_UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(format_unit(count, f"duration-{unit}", length="long", locale=locale))
    return " ".join(parts) or format_unit(0, "duration-second", length="long", locale=locale)
