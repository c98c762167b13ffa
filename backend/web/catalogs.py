"""The pages' message catalogue: every `_()` string of the templates, extracted with Babel's
Jinja2 extractor, and the Russian and Spanish `.po` files kept in step with it
(`scripts/update_catalogs`; tests/web/test_catalogs.py fails when a string is untranslated)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from backend.i18n import DEFAULT_LOCALE, LOCALE_DIR, LOCALES
from backend.web.render import TEMPLATES_DIR

DOMAIN = "messages"
_METHODS = [("**.html", "jinja2.ext:babel_extract")]
_OPTIONS = {"**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}


def extract(templates: Path = TEMPLATES_DIR) -> Catalog:
    """Every translatable string of the templates, with where it is used."""
    catalog = Catalog(domain=DOMAIN, project="Quality Escrow", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        templates, method_map=_METHODS, options_map=_OPTIONS
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments,
                    context=context)
    return catalog


def po_path(locale: str, domain: str = DOMAIN) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{domain}.po"


def read_catalog(locale: str, domain: str = DOMAIN) -> Catalog:
    path = po_path(locale, domain)
    if not path.is_file():
        return Catalog(locale=locale, domain=domain, charset="utf-8")
    with path.open("rb") as source:
        return read_po(source, locale=locale, domain=domain)


def update_catalogs() -> dict[str, list[str]]:
    """Brings each translated language's `.po` in step with the templates (new strings added
    untranslated, gone ones dropped, translations kept); returns the untranslated msgids per
    language."""
    template = extract()
    missing: dict[str, list[str]] = {}
    for locale in LOCALES:
        if locale == DEFAULT_LOCALE:
            continue
        catalog = read_catalog(locale)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        path = po_path(locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as target:
            write_po(target, catalog, width=100, omit_header=False, sort_output=False)
        missing[locale] = untranslated(catalog)
    return missing


def untranslated(catalog: Catalog) -> list[str]:
    """The msgids of `catalog` without a (non-fuzzy) translation."""
    out = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            out.append(str(message.id))
    return out
