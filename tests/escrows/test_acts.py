"""Acceptance acts (`GET /api/escrows/{id}/milestones/{m}/act.pdf`): a settled milestone's
certificate names the signer recovered from the settling transaction, the transaction, the
rating and the review's attachments by sha256; it is written in English, Russian or Spanish
(`?lang=`, else `Accept-Language`) in an embedded Unicode font, so a review prints verbatim, with
times in UTC or the zone asked for (`?tz=`). Every API test runs on SQLite and PostgreSQL; the
catalogue tests need neither."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from eth_typing import HexStr
from pypdf import PdfReader

from backend.confirmations.reviews import build_review, store_attachment, store_review
from backend.escrows import acts
from backend.escrows.acts import MISSING_GLYPH, format_time, printable, time_zone
from backend.i18n import LOCALE_DIR, translations
from tests.api.support import Api
from tests.chain.support import wallet_escrow
from tests.support import ETH

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
#: a Russian review with Spanish accents: none of it is Latin-1 but the accents
REVIEW_RU_ES = (
    "Работа принята: монтаж выполнен, замечаний нет. "
    "Señalización instalada según el pliego; niño, año, acción, pingüino."
)
ACT = "/api/escrows/{escrow_id}/milestones/0/act.pdf"


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def _words(pdf: bytes) -> str:
    """The act's text with every run of whitespace (line wraps, non-breaking spaces) as one
    space."""
    return " ".join(_text(pdf).split())


def _settle_by_signature(
    api: Api, comment: str = "Installed and tested, all good", photo_name: str = "site-photo.png"
) -> tuple[int, str, str]:
    """A milestone settled by the client's signature with a review and a photo; returns the
    escrow id, the settling transaction and the photo's sha256."""
    env = api.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    with api.services.sessions.begin() as session:
        photo, _ = store_attachment(session, api.services.settings.data_dir, PNG,
                                    name=photo_name, declared_type="image/png")
        review = build_review(session, comment, (photo.sha256,))
        store_review(session, review)
        digest = photo.sha256
    conf = env.confirmation(escrow_id, 0, 4, review.comment_hash)
    result = env.escrow.confirm_with_sig(conf, env.sign(conf), env.parties.relayer.address)
    api.index()
    return escrow_id, result.tx_hash, digest


def test_the_act_of_a_milestone_settled_by_signature_names_signer_tx_rating_and_attachment(
    api: Api,
) -> None:
    escrow_id, tx_hash, digest = _settle_by_signature(api)
    env = api.env

    response = api.http.get(f"/api/escrows/{escrow_id}/milestones/0/act.pdf")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    chain_id = env.escrow.chain_id
    assert response.headers["content-disposition"] == (
        f'inline; filename="escrow-{chain_id}-{escrow_id}-milestone-0-act.pdf"'
    )
    assert response.content.startswith(b"%PDF")
    text = _text(response.content)
    block = env.w3.eth.get_transaction(HexStr(tx_hash))["blockNumber"]
    assert f"Recovered signer {env.client}" in text
    assert "Signer is client yes" in text
    assert tx_hash.lower() in text.lower()
    assert f"Block {block}" in text
    assert "Rating 4 of 5" in text
    assert digest in text
    assert "site-photo.png (image/png, 32 bytes)" in text
    assert "Comment Installed and tested, all good" in text
    assert "To provider 0.8 ETH (800000000000000000 base units)" in text
    assert "To client 0.2 ETH (200000000000000000 base units)" in text
    assert env.escrow.address in text
    assert f"Chain id {chain_id}" in text


def test_the_act_of_a_milestone_confirmed_by_transaction_has_no_signature_section(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    api.index()

    response = api.http.get(f"/api/escrows/{escrow_id}/milestones/0/act.pdf")

    assert response.status_code == 200, response.text
    text = _text(response.content)
    assert "confirmed by the client's own transaction (confirm)" in text
    assert "Recovered signer" not in text
    assert "No review: the client left no comment and no attachments." in text
    assert "To provider 1 ETH (1000000000000000000 base units)" in text


def test_acts_answer_404_for_an_unknown_escrow_or_milestone_and_409_when_not_settled(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    api.index()

    unknown = api.error("GET", f"/api/escrows/{escrow_id + 1}/milestones/0/act.pdf", 404)
    assert unknown == {"error": "not_found", "detail": f"unknown escrow {escrow_id + 1}"}
    no_milestone = api.error("GET", f"/api/escrows/{escrow_id}/milestones/2/act.pdf", 404)
    assert no_milestone == {"error": "not_found", "detail": f"unknown milestone {escrow_id}/2"}
    delivered = api.error("GET", f"/api/escrows/{escrow_id}/milestones/0/act.pdf", 409)
    assert delivered == {
        "error": "not_settled",
        "detail": f"milestone 0 of escrow {escrow_id} is not settled (state delivered)",
    }
    untouched = api.error("GET", f"/api/escrows/{escrow_id}/milestones/1/act.pdf", 409)
    assert untouched["detail"].endswith("(state none)")


def test_the_act_of_a_contract_wallet_client_names_the_wallet_that_accepted_the_signature(
    api: Api,
) -> None:
    env = api.env
    escrow_id, wallet = wallet_escrow(env)
    env.deliver(escrow_id, 0)
    conf = env.confirmation(escrow_id, 0, rating=5)
    # the wallet accepts any bytes: no key can be recovered from them
    env.escrow.confirm_with_sig(conf, b"\xab" * 80, env.parties.relayer.address)
    api.index()

    response = api.http.get(f"/api/escrows/{escrow_id}/milestones/0/act.pdf")

    assert response.status_code == 200, response.text
    text = " ".join(_text(response.content).split())
    assert f"Recovered signer {wallet}" in text
    assert "Signer is client yes" in text
    assert "contract wallet that accepts this signature (EIP-1271)" in text


# ------------------------------------------------------------------ text and languages


def test_a_russian_review_with_spanish_accents_prints_verbatim(api: Api) -> None:
    escrow_id, _, digest = _settle_by_signature(api, REVIEW_RU_ES, "фото-объекта-año.png")

    response = api.http.get(ACT.format(escrow_id=escrow_id))

    assert response.status_code == 200, response.text
    words = _words(response.content)
    assert "?" not in words and MISSING_GLYPH not in words  # nothing replaced (Latin-1 did)
    assert f"Comment {REVIEW_RU_ES}" in words
    assert "Attachment фото-объекта-año.png (image/png, 32 bytes)" in words
    assert digest in words
    # the fonts are embedded, so the act reads the same on a machine without them
    assert b"/FontFile2" in response.content
    assert b"DejaVuSans" in response.content


def test_the_act_speaks_the_language_asked_for_then_the_browsers_then_english(api: Api) -> None:
    escrow_id, _, _ = _settle_by_signature(api, REVIEW_RU_ES)
    url = ACT.format(escrow_id=escrow_id)

    english = api.http.get(url)
    russian = api.http.get(url, params={"lang": "ru"})
    spanish = api.http.get(url, headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"})
    chosen = api.http.get(url, params={"lang": "ru-RU"}, headers={"Accept-Language": "es"})
    unsupported = api.http.get(url, params={"lang": "fr"}, headers={"Accept-Language": "es"})

    for response, lang in ((english, "en"), (russian, "ru"), (spanish, "es"), (chosen, "ru"),
                           (unsupported, "es")):
        assert response.status_code == 200, response.text
        assert response.headers["content-language"] == lang
        assert "Accept-Language" in response.headers["vary"]
    en = _words(english.content)
    assert f"Certificate of completion — escrow {escrow_id}, milestone 0" in en
    for heading in ("Parties", "Split paid", "Review", "Client's signature (EIP-712)",
                    "On chain", "How to verify this against the chain"):
        assert heading in en
    assert "Rating 4 of 5" in en
    assert "Settled confirmed by the client's EIP-712 signature (confirmWithSig)" in en

    ru = _words(russian.content)
    assert f"Акт выполненных работ — эскроу {escrow_id}, этап 0" in ru
    for heading in ("Стороны", "Выплаченные доли", "Отзыв", "Подпись клиента (EIP-712)",
                    "В блокчейне", "Как проверить акт по блокчейну"):  # noqa: RUF001
        assert heading in ru
    assert "Оценка 4 из 5" in ru
    assert "Подписал клиент да" in ru
    # amounts in the locale's way (decimal comma), the base units exact, Russian plural forms
    assert "Исполнителю 0,8 ETH (800000000000000000 базовых единиц)" in ru
    assert "Токен ETH, 18 знаков после запятой" in ru
    assert "(image/png, 32 байта)" in ru
    assert "Parties" not in ru and "Split paid" not in ru
    assert f"Комментарий {REVIEW_RU_ES}" in ru  # the review itself is never translated
    assert _words(chosen.content) == ru

    es = _words(spanish.content)
    assert f"Certificado de finalización — depósito {escrow_id}, hito 0" in es
    for heading in ("Partes", "Reparto pagado", "Reseña", "Firma del cliente (EIP-712)",
                    "En la cadena", "Cómo comprobarlo en la cadena"):
        assert heading in es
    assert "Valoración 4 de 5" in es
    assert "Al proveedor 0,8 ETH (800000000000000000 unidades base)" in es
    assert "Firmó el cliente sí" in es
    assert _words(unsupported.content) == es


def test_times_are_in_utc_or_in_the_zone_asked_for_and_an_unknown_zone_is_refused(
    api: Api,
) -> None:
    env = api.env
    escrow_id = env.create_active(env.params((ETH,)))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    api.index()
    url = ACT.format(escrow_id=escrow_id)
    block = env.w3.eth.get_block("latest")
    moment = datetime.fromtimestamp(block["timestamp"], UTC)

    utc = _words(api.http.get(url).content)
    madrid = api.http.get(url, params={"tz": "Europe/Madrid", "lang": "es"})

    assert f"Time {moment:%Y-%m-%d %H:%M:%S} UTC (unix {block['timestamp']})" in utc
    assert madrid.status_code == 200, madrid.text
    local = moment.astimezone(ZoneInfo("Europe/Madrid"))
    offset = local.strftime("%z")
    assert (
        f"Fecha y hora {local:%Y-%m-%d %H:%M:%S} UTC{offset[:3]}:{offset[3:]} (Europe/Madrid) "
        f"(unix {block['timestamp']})"
    ) in _words(madrid.content)
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "localtime", "utc"):
        refused = api.error("GET", url, 422, params={"tz": bad})
        assert refused["error"] == "invalid"
        assert refused["detail"].startswith("tz: ") and "unknown time zone" in refused["detail"]
    api.error("GET", url, 422, params={"tz": "x" * 65})


def test_the_act_is_the_same_bytes_for_the_same_facts_language_and_zone(api: Api) -> None:
    escrow_id, _, _ = _settle_by_signature(api, REVIEW_RU_ES)
    url = ACT.format(escrow_id=escrow_id)
    for params in ({}, {"lang": "ru", "tz": "Asia/Tokyo"}):
        assert api.http.get(url, params=params).content == api.http.get(url, params=params).content


def test_what_the_fonts_cannot_draw_prints_as_a_visible_replacement() -> None:
    assert printable("Работа принята — ñ ü ß € ✓") == "Работа принята — ñ ü ß € ✓"
    assert printable("漢字 ok") == f"{MISSING_GLYPH}{MISSING_GLYPH} ok"
    assert printable("a\tb\r\nc\rd") == "a    b\nc\nd"


def test_format_time_names_the_zone_and_its_offset() -> None:
    assert format_time(0) == "1970-01-01 00:00:00 UTC"
    assert time_zone(None) is UTC and time_zone("UTC") is UTC
    moscow = time_zone("Europe/Moscow")
    assert format_time(1_700_000_000, moscow) == "2023-11-15 01:13:20 UTC+03:00 (Europe/Moscow)"
    assert format_time(1_700_000_000, time_zone("America/St_Johns")) == (
        "2023-11-14 18:43:20 UTC-03:30 (America/St_Johns)"
    )
    with pytest.raises(ValueError, match="unknown time zone"):
        time_zone("Europe/Atlantis")


# ------------------------------------------------------------------ the catalogues


def _act_messages() -> list[str | tuple[str, str]]:
    """Every msgid the act uses: the `_()`, `ngettext()` and `N_()` calls in its module, as
    Babel extracts them (a plural is `(singular, plural)`)."""
    assert acts.__file__ is not None
    found: list[str | tuple[str, str]] = []
    for _lineno, message, _comments, _context in extract_from_file("python", acts.__file__):
        key = message if isinstance(message, str) else (message[0], message[1])
        if key not in found:
            found.append(key)
    return found


def _catalogue(locale: str) -> Catalog:
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "acts.po"
    with path.open("rb") as source:
        # abort_invalid: a plural with more or fewer forms than the header's nplurals fails
        return read_po(source, locale=locale, domain="acts", abort_invalid=True)


def _fields(text: str) -> list[str]:
    return sorted(re.findall(r"%\([a-z_]+\)s", text))


def test_the_extraction_finds_the_acts_strings() -> None:
    messages = _act_messages()
    assert "Parties" in messages
    assert "resolved by the arbiter" in messages  # N_() at module level
    assert "input not decodable: %(error)s" in messages  # N_() inside a Note
    assert ("%(amount)s (%(units)s base unit)", "%(amount)s (%(units)s base units)") in messages
    assert len(messages) >= 55


@pytest.mark.parametrize(("locale", "plural_forms"), [("ru", 3), ("es", 2)])
def test_every_string_of_the_act_has_a_translation_in_the_catalogue(
    locale: str, plural_forms: int
) -> None:
    catalogue = _catalogue(locale)
    assert catalogue.locale_identifier == locale
    assert catalogue.num_plurals == plural_forms
    header = (LOCALE_DIR / locale / "LC_MESSAGES" / "acts.po").read_text()
    assert f'"Plural-Forms: nplurals={plural_forms}; plural=' in header
    assert f'"Language: {locale}\\n"' in header
    used = _act_messages()
    missing, empty, fields = [], [], []
    for key in used:
        message = catalogue.get(key[0] if isinstance(key, tuple) else key)
        if message is None or message.id != key:
            missing.append(key)
            continue
        strings = list(message.string) if isinstance(message.string, tuple) else [message.string]
        if message.fuzzy or not all(strings) or len(strings) != (
            plural_forms if isinstance(key, tuple) else 1
        ):
            empty.append(key)
        sources = list(key) if isinstance(key, tuple) else [key]
        if any(_fields(str(s)) != _fields(sources[-1]) for s in strings):
            fields.append(key)
    assert missing == [], f"add these to backend/locale/{locale}/LC_MESSAGES/acts.po"
    assert empty == [], f"translate these in backend/locale/{locale}/LC_MESSAGES/acts.po"
    assert fields == [], "a translation must keep every %(name)s field of its msgid"
    stale = [m.id for m in catalogue if m.id and m.id not in used]
    assert stale == [], "the act no longer uses these: remove them from the catalogue"


def test_a_new_act_string_without_a_translation_would_fail_the_check() -> None:
    catalogue = _catalogue("ru")
    assert catalogue.get("Parties") is not None
    assert catalogue.get("A string nobody translated") is None
    # and the catalogue is what the act gets
    assert translations("ru", "acts").gettext("Parties") == "Стороны"
    assert translations("es", "acts").ngettext(
        "%(name)s (%(media_type)s, %(size)s byte)", "%(name)s (%(media_type)s, %(size)s bytes)", 1
    ) == "%(name)s (%(media_type)s, %(size)s byte)"
    assert translations("en", "acts").gettext("Parties") == "Parties"
