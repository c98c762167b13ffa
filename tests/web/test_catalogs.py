"""Every string the pages show is translated into Russian and Spanish: the catalogues hold a
non-fuzzy translation of each `_()` string the templates use (run `scripts/update_catalogs`
after changing a template, then translate what it lists)."""

from __future__ import annotations

import pytest
from babel.messages.catalog import Catalog

from backend.i18n import translations
from backend.web.catalogs import extract, read_catalog, untranslated


@pytest.mark.parametrize("locale", ["ru", "es"])
def test_every_template_string_has_a_translation(locale: str) -> None:
    catalog = read_catalog(locale)
    used = {str(m.id) for m in extract() if m.id}
    known = {str(m.id) for m in catalog if m.id}
    assert sorted(used - known) == [], f"run scripts/update_catalogs and translate ({locale})"
    assert untranslated(catalog) == []


@pytest.mark.parametrize("locale", ["ru", "es"])
def test_placeholders_survive_translation(locale: str) -> None:
    for message in read_catalog(locale):
        if not message.id or not isinstance(message.id, str):
            continue
        assert _placeholders(message.id) == _placeholders(str(message.string)), message.id


def _placeholders(text: str) -> list[str]:
    import re

    return sorted(re.findall(r"%\([a-z_]+\)s", text))


def test_the_untranslated_check_can_fail() -> None:
    catalog = Catalog(locale="ru")
    catalog.add("Withdraw", "")
    catalog.add("Escrows", "Эскроу", flags=["fuzzy"])
    catalog.add("Dashboard", "Панель")
    assert untranslated(catalog) == ["Withdraw", "Escrows"]


def test_a_catalogue_is_what_the_pages_get() -> None:
    assert translations("ru").gettext("Dashboard") != "Dashboard"
    assert translations("en").gettext("Dashboard") == "Dashboard"
